package proxy

import (
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestUpstreamQuery(t *testing.T) {
	for raw, want := range map[string]string{
		"":                              "",
		"api-version=2024-06-01":        "api-version=2024-06-01",
		"key=s":                         "",
		"key":                           "",
		"Key=s&api-version=1":           "api-version=1",
		"api-version=1&key=s&keys=kept": "api-version=1&keys=kept",
		"%6b%65%79=s&a=%2C":             "a=%2C",
		"access_token=t&stream=true":    "stream=true",
		"a=1&&b=2":                      "a=1&&b=2",
		"monkey=1;x":                    "monkey=1;x",
	} {
		if got := upstreamQuery(raw, endpoint.Spec{}); got != want {
			t.Errorf("upstreamQuery(%q) = %q, want %q", raw, got, want)
		}
		if got := upstreamQuery(raw, endpoint.Spec{PassClientAuth: true}); got != raw {
			t.Errorf("pass_client_auth: upstreamQuery(%q) = %q, want it as sent", raw, got)
		}
	}
}

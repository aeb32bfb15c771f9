package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A relayed answer (JSON and stream) carries no header that speaks for the
// backend's server or origin: not its Date (net/http dates it at the write
// instead), Server, X-Powered-By, Alt-Svc, HSTS, NEL/Report-To,
// Reporting-Endpoints, nginx's X-Accel-* or Via (the hops behind the
// gateway); the rest passes (the hosted API's per-call headers the OpenAI
// SDKs read).
func TestRelayedAnswerDropsTheBackendsOriginHeaders(t *testing.T) {
	const backendDate = "Sun, 06 Nov 1994 08:49:37 GMT"
	dropped := map[string]string{
		"Date":                      backendDate,
		"Server":                    "uvicorn",
		"X-Powered-By":              "Express",
		"Alt-Svc":                   `h3=":443"; ma=86400`,
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"Nel":                       `{"report_to":"cf-nel","max_age":604800}`,
		"Report-To":                 `{"group":"cf-nel","endpoints":[{"url":"https://a.example/report"}]}`,
		"Reporting-Endpoints":       `default="https://a.example/report"`,
		"X-Accel-Buffering":         "no",
		"X-Accel-Redirect":          "/internal/x",
		"Via":                       "1.1 upstream-lb",
	}
	kept := map[string]string{
		"Openai-Processing-Ms": "42",
		"Openai-Version":       "2020-10-01",
	}
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "json", true: "stream"}[stream]
		t.Run(name, func(t *testing.T) {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range dropped {
					w.Header().Set(k, v)
				}
				for k, v := range kept {
					w.Header().Set(k, v)
				}
				if stream {
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\ndata: [DONE]\n\n")
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
			}))
			defer be.Close()
			url := startFramedGateway(t, nil, be.URL)
			body := `{"model":"m1","messages":[]}`
			if stream {
				body = `{"model":"m1","stream":true,"messages":[]}`
			}
			resp := post(t, url, body)
			readAll(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for k, v := range dropped {
				if k == "X-Accel-Buffering" {
					continue // the gateway's own on a stream: below
				}
				if got := resp.Header.Values(k); k == "Date" {
					if len(got) != 1 || got[0] == v {
						t.Errorf("Date %q, want one of the gateway's, not the backend's %q", got, v)
					} else if _, err := http.ParseTime(got[0]); err != nil {
						t.Errorf("Date %q: %v", got[0], err)
					}
				} else if len(got) != 0 {
					t.Errorf("%s %q relayed, want dropped", k, got)
				}
			}
			// The gateway's own word to an nginx in front, on its streams only.
			var want []string
			if stream {
				want = []string{"no"}
			}
			if got := resp.Header.Values("X-Accel-Buffering"); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("X-Accel-Buffering %q, want %q", got, want)
			}
			for k, v := range kept {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
		})
	}
}

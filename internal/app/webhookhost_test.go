package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A webhook host written as a legacy IPv4 form (one decimal number, hex,
// octal, or fewer than four parts) is what browsers and inet_aton read as
// 127.0.0.1 and Go's resolver as a name that never resolves. It is refused
// at submit with a 400 naming the header, even where private targets are
// allowed, rather than accepted and retried for the whole delivery budget.
func TestAsyncWebhookNumericHostRefusedAtSubmit(t *testing.T) {
	be, _ := countingBackend(t)
	url := startQueueApp(t, be.URL)
	body := `{"model":"m","messages":[{"role":"user","content":"later"}]}`
	for _, hook := range []string{"http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/", "http://10.0.0.010./x"} {
		code, _, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body),
			"Prefer", "respond-async", "X-Sluice-Webhook", hook)
		var e struct {
			Error struct{ Code, Param, Message string }
		}
		_ = json.Unmarshal(b, &e)
		// The message names the form, not "private": private targets are
		// allowed on this gateway.
		if code != http.StatusBadRequest || e.Error.Code != "invalid_webhook" || e.Error.Param != "X-Sluice-Webhook" ||
			!strings.Contains(e.Error.Message, "dotted-quad") {
			t.Errorf("%s: %d %s, want 400 invalid_webhook on X-Sluice-Webhook", hook, code, b)
		}
	}
	// A name and a dotted quad are still taken.
	for _, hook := range []string{"http://hooks.example.com/x", "http://127.0.0.1:9/x", "http://v6.example.com./x"} {
		if code, _, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(body),
			"Prefer", "respond-async", "X-Sluice-Webhook", hook); code != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", hook, code, b)
		}
	}
}

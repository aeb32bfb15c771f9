package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestIdempotencyKeyReusedForAnotherRequestIs422: an Idempotency-Key
// names one request. Resent with the same bytes it replays the first job
// (Idempotent-Replayed); reused for another body or another endpoint it
// is a 422 naming the header, as Stripe and the IETF Idempotency-Key
// draft answer. Before, the gateway answered 202 with the first job: the
// client believed its new request queued and later read another
// request's answer.
func TestIdempotencyKeyReusedForAnotherRequestIs422(t *testing.T) {
	be, calls := countingBackend(t)
	url := startQueueApp(t, be.URL)
	first := `{"model":"m","messages":[{"role":"user","content":"report for March"}]}`
	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(first),
		"Prefer", "respond-async", "Idempotency-Key", "report-42")
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	loc := h.Get("Location")

	code, h, b = do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(first),
		"Prefer", "respond-async", "Idempotency-Key", "report-42")
	if code != http.StatusAccepted || h.Get("Location") != loc || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("same request resent: %d %v %s, want 202 replaying %s", code, h, b, loc)
	}

	for _, c := range []struct{ name, path, body string }{
		{"another body", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"report for April"}]}`},
		{"another endpoint", "/v1/completions", `{"model":"m","prompt":"report for March"}`},
	} {
		code, h, b := do(t, http.MethodPost, url+c.path, "application/json", strings.NewReader(c.body),
			"Prefer", "respond-async", "Idempotency-Key", "report-42")
		var e struct {
			Error struct {
				Message, Type, Code string
				Param               *string
			}
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s: %d %s: %v", c.name, code, b, err)
		}
		if code != http.StatusUnprocessableEntity || e.Error.Code != "idempotency_key_reused" ||
			e.Error.Type != "invalid_request_error" || e.Error.Param == nil || *e.Error.Param != "Idempotency-Key" ||
			h.Get("Location") != "" || h.Get("X-Request-Id") == "" {
			t.Fatalf("%s with a used key: %d %v %s, want 422 idempotency_key_reused naming Idempotency-Key", c.name, code, h, b)
		}
	}

	pollJSON(t, url+loc, func(m map[string]any) bool { return m["status"] == "succeeded" })
	if n := calls.Load(); n != 1 {
		t.Fatalf("backend calls %d, want 1 (the refused reuses ran nothing)", n)
	}
}

package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A refusal behind a burst of its tenant's refusals, before any of them
// has come back or missed its appointment, is booked behind them (as
// clients that come back expect: the honesty test's retries are served
// because of it) and its message says so: Retry-After follows what the
// message states. Once appointments are missed the book counts only the
// share kept (admission.TestNoShowsDoNotPushTheBookOut): an operator's
// audit saw Retry-After: 300 with x-should-retry: false after a 400 req/s
// burst of one-shot clients, the message saying "estimated wait 628ms".
// On a frozen clock: one slot, held, its hold measured at 1 s
// (startFullMeasuredGateway).
func TestRefusalBehindABurstStatesItsPlaceInTheBook(t *testing.T) {
	url, _ := startFullMeasuredGateway(t)

	send := func(i int) (*http.Response, string) {
		t.Helper()
		body := fmt.Sprintf(`{"model":"m1","messages":[{"role":"user","content":"burst %d"}],"max_tokens":4}`, i)
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Sluice-Max-Wait", "50ms")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}
	// The burst: 150 distinct requests of one tenant, each refused, none
	// sent again (no client has been seen coming back), all within the
	// slot's hold.
	for i := range 150 {
		if resp, body := send(i); resp.StatusCode != 503 {
			t.Fatalf("burst request %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	resp, body := send(1000)
	if resp.StatusCode != 503 {
		t.Fatalf("fresh request: status %d: %s", resp.StatusCode, body)
	}
	_, code, msg := apiErr(t, body)
	if _, err := strconv.ParseInt(resp.Header.Get("Retry-After-Ms"), 10, 64); err != nil {
		t.Fatalf("retry-after-ms %q: %v", resp.Header.Get("Retry-After-Ms"), err)
	}
	if !strings.Contains(msg, "booked to come back first: retry after ") {
		t.Fatalf("refusal behind the burst (%s: %s): Retry-After %s; want the message to state its place in the book",
			code, msg, resp.Header.Get("Retry-After"))
	}
}

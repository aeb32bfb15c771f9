package gateway

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// TestConnectionKeepsGuardedAndExchange: requests with a connection's
// spare slot (netguard.Arrival.Spare, an HTTP/1.x connection's) leave
// their guarded there, with the exchange they ran in, for the next request
// on the connection; each answer is still its own (request id, X-Cache),
// and what is kept is cleared. Without a slot nothing is kept.
func TestConnectionKeepsGuardedAndExchange(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	var spare any
	serve := func(a netguard.Arrival) *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(cacheHitBody))
		r.Header.Set("Content-Type", "application/json")
		gw.ServeFramed(w, r, a)
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		return w
	}
	first := serve(netguard.Arrival{BodyReceived: true, Spare: &spare})
	gd, _ := spare.(*guarded)
	if gd == nil || gd.x == nil {
		t.Fatalf("the connection's slot holds %T (exchange %v), want the request's guarded and its exchange", spare, gd != nil && gd.x != nil)
	}
	x := gd.x
	if !reflect.ValueOf(*x).IsZero() {
		t.Fatalf("the kept exchange is not cleared: %+v", *x)
	}
	second := serve(netguard.Arrival{BodyReceived: true, Spare: &spare})
	if spare != any(gd) || gd.x != x {
		t.Fatal("the second request on the connection did not reuse its guarded and exchange")
	}
	if f, s := first.Header().Get("X-Cache"), second.Header().Get("X-Cache"); f != "MISS" || s != "HIT" {
		t.Fatalf("X-Cache %q then %q, want MISS then HIT", f, s)
	}
	if f, s := first.Header().Get("X-Request-Id"), second.Header().Get("X-Request-Id"); f == "" || f == s {
		t.Fatalf("request ids %q and %q: want two", f, s)
	}
	if second.Header().Get("Age") == "" || second.Header().Get("Date") == "" || second.Header().Get("X-Sluice-Model") != "m1" {
		t.Fatalf("the hit's headers: %v", second.Header())
	}
	// HTTP/2, or no Listener: no slot, nothing kept.
	third := serve(netguard.Arrival{BodyReceived: true})
	if third.Header().Get("X-Cache") != "HIT" || spare != any(gd) {
		t.Fatalf("without a slot: X-Cache %q, slot changed %v", third.Header().Get("X-Cache"), spare != any(gd))
	}
}

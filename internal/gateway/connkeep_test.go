package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
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
	kept := *x
	kept.ids = openai.RequestIDs{} // the block of its request ids stays for the connection's next ones
	if !reflect.ValueOf(kept).IsZero() {
		t.Fatalf("the kept exchange is not cleared: %+v", kept)
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

// weakFramed is the gateway behind netguard.Guard that keeps a weak
// pointer to each request it serves.
type weakFramed struct {
	gw   *Gateway
	reqs chan weak.Pointer[http.Request]
}

func (h weakFramed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.ServeFramed(w, r, netguard.Arrival{})
}

func (h weakFramed) ServeFramed(w http.ResponseWriter, r *http.Request, a netguard.Arrival) {
	h.reqs <- weak.Make(r)
	h.gw.ServeFramed(w, r, a)
}

// TestKeptGuardedHoldsNoFinishedRequest: what an idle HTTP/1.x connection
// keeps for its next request (its guarded) holds nothing of the request it
// served: not net/http's response writer (its header maps, its buffer,
// the *http.Request) nor the body's bounds (a body still arriving when the
// handler began: Expect: 100-continue). Held, each idle keep-alive
// connection kept ~2.4 KiB more heap.
func TestKeptGuardedHoldsNoFinishedRequest(t *testing.T) {
	be := newOKBackend(t)
	_, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := netguard.NewListener(ln, netguard.ConnLimits{Total: 64}, nil)
	gl.ScanFraming()
	idle := make(chan struct{}, 4)
	h := weakFramed{gw: gw, reqs: make(chan weak.Pointer[http.Request], 4)}
	srv := &http.Server{Handler: netguard.Guard(h), ConnContext: gl.ConnContext, ReadHeaderTimeout: time.Minute,
		ConnState: func(c net.Conn, s http.ConnState) {
			netguard.ConnState(c, s)
			if s == http.StateIdle {
				idle <- struct{}{}
			}
		}}
	go srv.Serve(gl)
	defer srv.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// The body is sent only once the handler reads it (100 Continue): it
	// has not arrived when the handler begins, so the request's body is
	// timed (guarded.body).
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(cacheHitBody))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue: %v %v", resp, err)
	}
	conn.Write([]byte(cacheHitBody))
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the answer: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	first := <-h.reqs
	<-idle // the connection waits for its next request
	waitUntil(t, "the finished request collected while its connection is idle", func() bool {
		runtime.GC()
		return first.Value() == nil
	})
	// The connection still serves its next request in what it kept.
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(cacheHitBody), cacheHitBody)
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("the next request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	<-h.reqs
}

package netguard

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSpareIsTheConnections: Guard hands an HTTP/1.x request its
// connection's spare slot (Arrival.Spare), so what one request leaves there
// the next request on the same connection finds, and a request on another
// connection does not; a request that came through no Listener has none.
func TestSpareIsTheConnections(t *testing.T) {
	type seen struct {
		spare *any
		found any
	}
	got := make(chan seen, 8)
	h := framedHandler{t: t, serve: func(w http.ResponseWriter, r *http.Request, a Arrival) {
		s := seen{spare: a.Spare}
		if a.Spare != nil {
			s.found = *a.Spare
			*a.Spare = r.URL.Path // left for the connection's next request
		}
		got <- s
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := scanning(t, ln, h).Addr().String()
	two := "GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
	if statuses, _, _ := exchange(t, addr, two, 2); len(statuses) != 2 {
		t.Fatalf("answers on the first connection: %v, want 2", statuses)
	}
	first, second := <-got, <-got
	if first.spare == nil || second.spare != first.spare {
		t.Fatalf("spare slots %p, %p: want one, the connection's", first.spare, second.spare)
	}
	if first.found != nil || second.found != "/first" {
		t.Fatalf("found %v then %v in the slot, want nothing then /first", first.found, second.found)
	}
	if statuses, _, _ := exchange(t, addr, "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1); len(statuses) != 1 {
		t.Fatalf("answers on the second connection: %v, want 1", statuses)
	}
	if other := <-got; other.spare == nil || other.spare == first.spare || other.found != nil {
		t.Fatalf("another connection's slot %p (found %v): want its own, empty", other.spare, other.found)
	}
	// Served without a Listener (its ConnContext): no slot.
	srv := &http.Server{Handler: Guard(h), ReadHeaderTimeout: 10 * time.Second}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(plain)
	defer srv.Close()
	resp, err := http.Post("http://"+plain.Addr().String()+"/plain", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; s.spare != nil {
		t.Fatalf("a request through no Listener got a spare slot %p", s.spare)
	}
}

// TestNoSpareForHTTP2: HTTP/2 requests of one connection run at once, so
// they get no spare slot (a handler would hand one request's allocation to
// another still running).
func TestNoSpareForHTTP2(t *testing.T) {
	got := make(chan *any, 4)
	h := framedHandler{t: t, serve: func(w http.ResponseWriter, r *http.Request, a Arrival) {
		if r.ProtoMajor != 2 {
			t.Errorf("served over %s, want HTTP/2", r.Proto)
		}
		if a.Memo == nil {
			t.Error("no connection memo: the request did not come through the Listener")
		}
		got <- a.Spare
		w.Write([]byte("ok"))
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := NewListener(ln, ConnLimits{Total: 64}, nil)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: Guard(h), ConnContext: gl.ConnContext, ConnState: gl.ConnState, ReadHeaderTimeout: 10 * time.Second, Protocols: &protos}
	go srv.Serve(gl)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + gl.Addr().String() + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if spare := <-got; spare != nil {
		t.Fatalf("an HTTP/2 request got a spare slot %p", spare)
	}
}

package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Each timeouts.stream_idle (with timeouts.connect) keys its own lean
// client, and a retired one stayed in the cache for the life of the
// process: reloads through many values left a client (and its counters)
// behind each. Now CloseRetired, after the drain, drops the retired
// clients the serving router does not take; one a request still holds is
// counted until its last connection closes, and the counters (dials)
// never go down.
func TestReloadsLeaveABoundedNumberOfLeanClients(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.(http.Flusher).Flush()
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	defer close(release)
	tr := NewTransportCache()
	defer tr.Close()
	clients := func() (cached, leaving int) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.lean), len(tr.leaving)
	}
	first := tr.Router(5*time.Second, time.Minute, true, nil, nil)
	tr.SetCurrent(first)
	held := getThrough(t, first, srv.URL+"/hold") // a stream that outlives the drains below
	const reloads = 20
	for i := 1; i <= reloads; i++ {
		// A stream_idle not configured before at every reload.
		idle := time.Minute + time.Duration(i%2)*time.Second + time.Duration(i)*time.Millisecond
		r := tr.Router(5*time.Second, idle, true, nil, nil)
		tr.SetCurrent(r)
		readAll(getThrough(t, r, srv.URL))
		tr.CloseRetired() // the drain's end
	}
	if cached, leaving := clients(); cached != 1 || leaving != 1 {
		t.Fatalf("after %d reloads, each a new stream_idle: %d lean clients cached, %d leaving; want the serving one and the one a stream holds", reloads, cached, leaving)
	}
	if st := tr.LeanStats(); st.Dials != reloads+1 || st.Open != 2 {
		t.Fatalf("after %d reloads: %+v; want every client's %d dials counted and 2 open (the serving pool's idle one, the held stream's)", reloads, st, reloads+1)
	}
	release <- struct{}{}
	readAll(held)
	tr.CloseIdle() // its connection, handed back to the dropped client, closed
	if cached, leaving := clients(); cached != 1 || leaving != 0 {
		t.Fatalf("after the held stream ended: %d cached, %d leaving; want 1 and 0", cached, leaving)
	}
	if st := tr.LeanStats(); st.Dials != reloads+1 {
		t.Fatalf("after the leaving client was forgotten: %+v; want its dial still counted (%d)", st, reloads+1)
	}
}

// A reload back to a retired client's values builds its router on that
// client before the earlier drain's CloseRetired: the client is no
// longer retired, so that CloseRetired does not drop it from the cache,
// and it serves, counted and handed out, after the commit, not a second
// client of the same values. (A guard on the dropping: it passes on the
// code that never dropped.)
func TestLeanClientDroppedBeforeItsCommitIsCachedAgain(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	tr := NewTransportCache()
	defer tr.Close()
	a := tr.Router(5*time.Second, time.Minute, true, nil, nil)
	tr.SetCurrent(a)
	readAll(getThrough(t, a, srv.URL))
	tr.SetCurrent(tr.Router(5*time.Second, 30*time.Second, true, nil, nil)) // a retired
	back := tr.Router(5*time.Second, time.Minute, true, nil, nil)           // built on a's client
	tr.CloseRetired()                                                       // a's drain ends before back commits
	tr.SetCurrent(back)
	again := tr.Router(5*time.Second, time.Minute, true, nil, nil)
	if again.plain != back.plain || again.plain != a.plain {
		t.Fatal("a router of the serving values after the commit takes another lean client; want the serving one")
	}
	if st := tr.LeanStats(); st.Dials != 1 {
		t.Fatalf("%+v; want the serving client's dial counted", st)
	}
}

// getThrough sends a GET to url through rt; a failure ends the test.
func getThrough(t *testing.T, rt http.RoundTripper, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// readAll reads resp's body to its end and closes it, so its connection
// goes back to its pool.
func readAll(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

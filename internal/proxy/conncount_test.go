package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// net/http's transport keeps its pool to itself; the connections it
// dials are counted instead. Against an HTTP/2 backend, ten concurrent
// requests share one connection: open 1, opened 1; closing the idle
// connections brings open back to 0.
func TestTransportConnectionsCountedOverHTTP2(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.WaitGroup
	var hold sync.Mutex // held while a request counts in arrived and waits for release
	holding := false
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("proto %s, want HTTP/2", r.Proto)
		}
		hold.Lock()
		h := holding
		hold.Unlock()
		if h {
			arrived.Done()
			<-release
		}
		io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	defer releaseAll() // before srv.Close, which waits for the handlers
	cache := NewTransportCache()
	tr := cache.For(5 * time.Second)
	tr.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	client := &http.Client{Transport: cache.Upstream(5*time.Second, time.Minute, true)} // https: the lean client hands it to tr

	// One request first: concurrent first requests may each dial before
	// the first connection has negotiated HTTP/2 (net/http then closes
	// the extra ones).
	get := func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get()
	hold.Lock()
	holding = true
	hold.Unlock()
	const n = 10
	arrived.Add(n)
	var done sync.WaitGroup
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			get()
		}()
	}
	arrived.Wait() // all ten in the handler at once
	if open, opened := cache.TransportConns(); open != 1 || opened != 1 {
		t.Fatalf("%d open, %d opened with %d requests in flight; want 1 and 1 (HTTP/2)", open, opened, n)
	}
	releaseAll()
	done.Wait()
	cache.CloseIdle()
	if open, opened := cache.TransportConns(); open != 0 || opened != 1 {
		t.Fatalf("after CloseIdle: %d open, %d opened; want 0 and 1", open, opened)
	}
}

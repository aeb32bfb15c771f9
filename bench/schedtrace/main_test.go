package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime/trace"
	"strings"
	"testing"
)

// A real trace of a real net/http server: its connection goroutines are
// found as request goroutines, with their P time, wake-ups and waits.
func TestReadFindsRequestGoroutinesOfARealServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("tracing unavailable: %v", err)
	}
	for range 20 {
		resp, err := http.Get(srv.URL)
		if err != nil {
			trace.Stop()
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	trace.Stop()
	a, err := read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var req *goroutine
	for id, g := range a.gs {
		if a.kindOf(id) == requestKind {
			req = g
		}
	}
	if req == nil || req.wakes == 0 || req.run <= 0 {
		t.Fatalf("no request goroutine with wake-ups and P time in the trace: %+v", req)
	}
	var out strings.Builder
	a.writeKinds(&out)
	a.writeWaits(&out, 0)
	if !strings.Contains(out.String(), requestKind) || !strings.Contains(out.String(), "request goroutines' waits for the P: n=") {
		t.Errorf("report lacks the request goroutines:\n%s", out.String())
	}
	if strings.Contains(out.String(), "waits for the P: n=0 ") {
		t.Errorf("no request goroutine wait counted:\n%s", out.String())
	}
}

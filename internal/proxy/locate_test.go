package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// stoppedTimer is a Timer whose function already ran.
type stoppedTimer struct{}

func (stoppedTimer) Stop() bool               { return false }
func (stoppedTimer) Reset(time.Duration) bool { return false }

// Locate's round is bounded by Timeouts.Total however many backends it
// asks (now every backend of a pool, a few at a time): with the total
// already past when the round starts, no backend is asked and the round
// is not "not found" (a backend not reached may hold the response).
// Before, Locate had no total bound: all 24 were asked, and their 404s
// made it NotFound.
func TestLocateWithinTotal(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	var backends []*endpoint.Backend
	for range 24 {
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		backends = append(backends, b)
	}
	const total = 77 * time.Second // told apart from the other bounds
	f := proxy.NewForwarder(proxy.Options{Transport: http.DefaultTransport,
		Timeouts: proxy.Timeouts{Probe: time.Minute, FirstByte: time.Minute, Total: total},
		AfterFunc: func(d time.Duration, fn func()) proxy.Timer {
			if d == total {
				fn() // the total is past as the round starts
				return stoppedTimer{}
			}
			return time.AfterFunc(d, fn)
		}})
	holder, res := f.Locate(context.Background(), &proxy.FollowUp{Method: http.MethodGet, Path: "/v1/responses/resp_x"}, backends)
	if holder != nil || res.NotFound || asked.Load() != 0 || !errors.Is(res.Err, proxy.ErrTotalTimeout) {
		t.Fatalf("past timeouts.total: holder %v, NotFound %v, %d backends asked, err %v", holder, res.NotFound, asked.Load(), res.Err)
	}
}

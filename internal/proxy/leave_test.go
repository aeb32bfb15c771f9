package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// leavingAfterPick picks gone first and, at that moment, does what a
// discovery change does next: the pool is swapped (gone left it) and
// gone's drain, finding nothing in flight on it, retires it. Every later
// pick is stays.
type leavingAfterPick struct {
	gone, stays *endpoint.Backend
	picks       *int
}

func (s leavingAfterPick) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	*s.picks++
	if len(tried) == 0 {
		s.gone.Leave()
		if s.gone.Inflight() == 0 { // the drain's check (app.waitIdle)
			s.gone.Retire()
		}
		return s.gone, nil
	}
	return s.stays, nil
}

// A request that picked a backend just before it left its pool, whose
// drain found it idle and retired it before the request took its slot,
// is sent to the backend that stays: nothing had been sent, so no attempt
// is spent (one attempt allowed here). Before, the attempt was cut at
// once by the retirement and answered 502: one of the rare 502s seen
// while a Kubernetes rollout replaced a pod.
func TestBackendLeavingAfterThePickIsNotSentTo(t *testing.T) {
	serve := func(name string) *endpoint.Backend {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"served_by":"`+name+`"}`)
		}))
		t.Cleanup(srv.Close)
		b, err := endpoint.New(endpoint.Spec{URL: srv.URL}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gone, stays := serve("gone"), serve("stays")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	f := proxy.NewForwarder(proxy.Options{Transport: transport, Attempts: 1,
		Timeouts: proxy.Timeouts{FirstByte: time.Minute, StreamIdle: time.Minute, Total: time.Minute}})
	raw := `{"model":"m","messages":[]}`
	body, err := proxy.NewBodyPool(nil).ReadBody(strings.NewReader(raw), int64(len(raw)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Release()
	w := httptest.NewRecorder()
	picks := 0
	res := f.Forward(context.Background(), w, &proxy.Request{Path: "/v1/chat/completions", Header: http.Header{},
		Body: body, Peek: openai.Peek{Model: "m"}, ServeModel: "m"}, leavingAfterPick{gone: gone, stays: stays, picks: &picks})
	if res.Err != nil || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"stays"`) {
		t.Fatalf("status %d, err %v, body %q; want 200 from the backend that stays", w.Code, res.Err, w.Body.String())
	}
	if res.Attempts != 1 || res.Retries != 0 || picks != 2 {
		t.Errorf("attempts %d, retries %d, picks %d; want 1, 0, 2", res.Attempts, res.Retries, picks)
	}
	if gone.Inflight() != 0 || gone.Requests() != 1 || gone.Failures() != 0 {
		t.Errorf("the backend that left: inflight %d, requests %d, failures %d; want 0, 1 (the slot given back), 0",
			gone.Inflight(), gone.Requests(), gone.Failures())
	}
}

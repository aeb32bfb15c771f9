package gateway

import (
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

type arrival struct {
	model, tenant string
	tokens        float64
}

type arrivalLog struct {
	mu  sync.Mutex
	got []arrival
}

func (l *arrivalLog) Arrival(_ time.Time, model, tenant string, tokens float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, arrival{model, tenant, tokens})
}

// Every live request that names a served model is counted as demand with
// its estimated tokens; one for a model that is not served is
// not.
func TestArrivalsAreCounted(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: prometheus.NewRegistry()}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := &arrivalLog{}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), Now: deps.Now, Arrivals: log})
	srv := httptest.NewServer(gw)
	defer func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) }()

	body := `{"model":"m1","max_tokens":10,"messages":[{"role":"user","content":"hello"}]}`
	for range 2 {
		if resp := post(t, srv.URL+"/v1/chat/completions", body); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp))
		} else {
			resp.Body.Close()
		}
	}
	post(t, srv.URL+"/v1/chat/completions", `{"model":"nope","messages":[]}`).Body.Close()

	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.got) != 2 {
		t.Fatalf("arrivals %+v, want the two requests for m1", log.got)
	}
	want := math.Ceil(float64(len(body))/4) + 10
	for _, a := range log.got {
		if a.model != "m1" || a.tokens != want || a.tenant == "" {
			t.Errorf("arrival %+v, want model m1, a tenant and %v estimated tokens", a, want)
		}
	}
}

package gateway

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// stepClock is an injected clock far from the wall clock (so a Date from
// net/http's own clock read cannot match it), moved by the test.
type stepClock struct{ off atomic.Int64 }

var stepClockBase = time.Date(2031, 5, 6, 7, 8, 9, 250e6, time.UTC)

func (c *stepClock) now() time.Time          { return stepClockBase.Add(time.Duration(c.off.Load())) }
func (c *stepClock) add(d time.Duration)     { c.off.Add(int64(d)) }
func (c *stepClock) date(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// startDatedGateway serves a caching gateway on clock c as Run does: the
// scanning listener and its guard, so a small request's body counts as
// received at arrival (netguard.BodyReceived). backend is the model m1's.
func startDatedGateway(t *testing.T, c *stepClock, backend string) string {
	t.Helper()
	return startFramedGateway(t, c.now, backend)
}

// startFramedGateway is startDatedGateway on clock now; nil is the wall
// clock, as Run gives the gateway (Options.Now nil).
func startFramedGateway(t *testing.T, now func() time.Time, backend string) string {
	t.Helper()
	depsNow := now
	if depsNow == nil {
		depsNow = time.Now
	}
	tiered := newTestTiered(t, cache.TieredOptions{})
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: depsNow, Rand: routing.NewRand(1), Registry: reg, Cache: tiered}
	rt, err := Build(testConfig(backend), deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: now})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := netguard.NewListener(ln, netguard.ConnLimits{Total: 64}, nil)
	gl.ScanFraming()
	srv := &http.Server{Handler: netguard.Guard(gw), ConnContext: gl.ConnContext, ConnState: gl.ConnState}
	go srv.Serve(gl)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })
	return "http://" + ln.Addr().String() + "/v1/chat/completions"
}

const dateHitBody = `{"model":"m1","temperature":0,"max_tokens":4,"messages":[{"role":"user","content":"date"}]}`

// A cache hit and a refusal carry the Date of the injected clock at
// arrival, as net/http formats it, and the next second's once the clock
// passes it. Without the cached Date, net/http dates them by the wall
// clock, years from this one.
func TestChainAnswersDatedByTheInjectedClock(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	c := new(stepClock)
	url := startDatedGateway(t, c, be.URL)
	if resp := post(t, url, dateHitBody); readAll(t, resp) == "" || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first: %d X-Cache %q", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	for i := 0; i < 2; i++ {
		want := c.date(c.now())
		resp := post(t, url, dateHitBody)
		readAll(t, resp)
		if resp.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("X-Cache %q, want HIT", resp.Header.Get("X-Cache"))
		}
		if got := resp.Header.Values("Date"); len(got) != 1 || got[0] != want {
			t.Fatalf("hit %d: Date %q, want [%q]", i, got, want)
		}
		resp = post(t, url, `{"model":"nope","messages":[]}`)
		readAll(t, resp)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown model: %d", resp.StatusCode)
		}
		if got := resp.Header.Values("Date"); len(got) != 1 || got[0] != want {
			t.Fatalf("refusal %d: Date %q, want [%q]", i, got, want)
		}
		c.add(time.Second) // the next round is a second later: a new Date
	}
}

// A relayed answer is dated by the gateway's clock when its head is
// written, whether or not the backend sends a Date (its clock is not the
// gateway's: proxy's isBackendOrigin), and not at the arrival, which a
// wait in the queue or for the backend would make stale: the backend here
// takes a second of the injected clock.
func TestRelayedAnswerDatedAtItsHead(t *testing.T) {
	const backendDate = "Sun, 06 Nov 1994 08:49:37 GMT"
	for _, tc := range []struct {
		name, date string
	}{{"backend's", backendDate}, {"none", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			c := new(stepClock)
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c.add(time.Second)
				if tc.date != "" {
					w.Header().Set("Date", tc.date)
				} else {
					w.Header()["Date"] = nil // net/http's server sends no Date
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
			}))
			defer be.Close()
			arrival := c.date(c.now())
			resp := post(t, startDatedGateway(t, c, be.URL), `{"model":"m1","messages":[]}`)
			readAll(t, resp)
			want := c.date(c.now())
			if got := resp.Header.Values("Date"); len(got) != 1 || got[0] != want || want == arrival {
				t.Fatalf("Date %q, want [%q] (backend's %q, arrival %q)", got, want, tc.date, arrival)
			}
		})
	}
}

// Concurrent hits while the clock crosses seconds (each request moves it
// on): each answer's Date is
// the clock's second at some point between its sending and its answer
// (the run under -race checks the shared value's publication).
func TestConcurrentHitsDatedRaceFree(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	c := new(stepClock)
	url := startDatedGateway(t, c, be.URL)
	readAll(t, post(t, url, dateHitBody)) // the miss that fills the cache
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				before := c.now().Truncate(time.Second)
				resp, err := http.Post(url, "application/json", strings.NewReader(dateHitBody)) // no t.Fatal off the test's goroutine
				if err != nil {
					errs <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				after := c.now()
				c.add(150 * time.Millisecond) // 8 x 25 of these cross 30 seconds
				d, err := http.ParseTime(resp.Header.Get("Date"))
				if err != nil || resp.Header.Get("X-Cache") != "HIT" || d.Before(before) || d.After(after) {
					errs <- resp.Header.Get("X-Cache") + " Date " + resp.Header.Get("Date") + " outside " + c.date(before) + " .. " + c.date(after)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

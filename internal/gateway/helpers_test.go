package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// simBackend starts the simulator with cfg behind a loopback server, both
// closed when the test ends.
func simBackend(t testing.TB, cfg sim.Config) (*sim.Server, *httptest.Server) {
	t.Helper()
	s := sim.New(cfg)
	t.Cleanup(s.Close)
	be := httptest.NewServer(s)
	t.Cleanup(be.Close)
	return s, be
}

// testConfig is a one-model config over the given backend URLs with short
// timeouts suitable for tests.
func testConfig(urls ...string) *config.Config {
	c := config.Default()
	c.Log.Access = false
	c.ExposeBackend = true
	// These bound every healthy answer in the package's tests, so they are
	// hang guards, not a race against a loaded machine (5s was); a test of
	// a timeout sets its own, against a backend that never answers.
	c.Timeouts.FirstByte = config.Duration(time.Minute)
	c.Timeouts.StreamIdle = config.Duration(time.Minute)
	// timeouts.connect (5 s) also bounds a follow-up's probe of a backend
	// and a TLS handshake: on a starved machine a probe of a healthy
	// backend ran past it, 503 response_unavailable (flakes11). The tests
	// of the probe bound set their own (respprobe_test.go).
	c.Timeouts.Connect = config.Duration(time.Minute)
	m := config.Model{Name: "m1", Policy: "round_robin"}
	for _, u := range urls {
		m.Backends = append(m.Backends, config.Backend{URL: u})
	}
	c.Models = []config.Model{m}
	return &c
}

// startGateway serves cfg through a real HTTP server.
func startGateway(t *testing.T, cfg *config.Config) (*httptest.Server, *Gateway) {
	t.Helper()
	return startGatewayWith(t, cfg, nil)
}

// adminServer serves gw's admin endpoints through a real HTTP server, as
// the admin listener does.
func adminServer(t *testing.T, gw *Gateway) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(gw.AdminHandler())
	t.Cleanup(srv.Close)
	return srv
}

// startGatewayWith is startGateway with deps adjusted by edit.
func startGatewayWith(t *testing.T, cfg *config.Config, edit func(*Deps)) (*httptest.Server, *Gateway) {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	if edit != nil {
		edit(&deps)
	}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: deps.Now})
	// A body read after its release (the relay gives a stream's back
	// early: proxy.Request.ReleaseBody) panics, and a slice of it kept
	// reads poison, in every test served here. Not in the benchmarks
	// (their bare testing.T has no name): they measure the pooled path.
	if t.Name() != "" {
		gw.bodies.PoisonReleased()
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		deps.Transport.CloseIdle()
		rt.Retire(nil)
	})
	return srv, gw
}

// post sends a JSON body, with the given header pairs after the
// Content-Type (which they may replace).
func post(t *testing.T, url, body string, hdr ...string) *http.Response {
	t.Helper()
	return do(t, http.MethodPost, url, body, append([]string{"Content-Type", "application/json"}, hdr...)...)
}

// do sends one request with the given method and header pairs.
func do(t *testing.T, method, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// apiErr decodes an OpenAI error object and checks its shape.
func apiErr(t *testing.T, body string) (typ, code, msg string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error object: %q (%v)", body, err)
	}
	if e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == nil {
		t.Fatalf("error object missing message/type/code: %q", body)
	}
	return e.Error.Type, *e.Error.Code, e.Error.Message
}

const chatBody = `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`

// okBackend answers every request with a fixed completion and records the
// bodies and headers it saw.
type okBackend struct {
	*httptest.Server
	bodies  chan []byte
	headers chan http.Header
	calls   atomic.Int32
}

func newOKBackend(t *testing.T) *okBackend {
	ob := &okBackend{bodies: make(chan []byte, 100), headers: make(chan http.Header, 100)}
	ob.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ob.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		select {
		case ob.bodies <- b:
		default:
		}
		select {
		case ob.headers <- r.Header.Clone():
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	t.Cleanup(ob.Close)
	return ob
}

func statusBackend(t *testing.T, status int, hdr ...string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"message":"busy","type":"server_error","code":null}}`)
	}))
	t.Cleanup(s.Close)
	return s
}

// closedURL is an address nothing listens on (connect refused).
func closedURL(t *testing.T) string {
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

// httptestServer serves h and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

type readCloser struct{ io.Reader }

func (readCloser) Close() error { return nil }

// openAtCleanup opens each gate (closes it, unless the test did) when the
// test ends, before the servers started earlier close: a test failing
// while requests are held at a gate otherwise left httptest.Server.Close
// waiting on them (the gateway's on its handlers in the held flight, the
// backend's on its held handlers) until the package's timeout. Call it
// once the gateway is started: cleanups run last first.
func openAtCleanup(t *testing.T, gates ...chan struct{}) {
	t.Cleanup(func() {
		for _, g := range gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
	})
}

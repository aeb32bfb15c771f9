package gateway

import (
	"bufio"
	"bytes"
	"fmt"
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

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// sampledBody is neither cached nor coalesced: it goes through serveDirect.
const sampledBody = `{"model":"m1","temperature":0.9,"messages":[{"role":"user","content":"x"}]}`

// backendEnded waits for the big backend's handler to return and reports
// whether the gateway cancelled it; a bound far past any machine's pace
// keeps a regression from hanging the test run.
func backendEnded(t *testing.T, be *bigBackend) (cancelled bool) {
	t.Helper()
	select {
	case c := <-be.ended:
		return c
	case <-time.After(60 * time.Second):
		t.Fatal("the backend never finished its answer: the client's pace held it")
		return false
	}
}

// readaheadGateway serves cfg through a real HTTP server whose
// connections have a small send buffer, so a client that does not read
// stops the gateway's writes after a few KiB instead of the megabytes
// loopback autotuning would queue; its metrics are on the registry.
func readaheadGateway(t *testing.T, cfg *config.Config) (string, *Gateway, *prometheus.Registry) {
	return readaheadGatewayTimed(t, cfg, nil, time.Now)
}

// readaheadGatewayTimed is readaheadGateway whose forwarder times its
// attempts with afterFunc (nil: real timers) on the clock now.
func readaheadGatewayTimed(t *testing.T, cfg *config.Config, afterFunc func(time.Duration, func()) proxy.Timer, now func() time.Time) (string, *Gateway, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: now, AfterFunc: afterFunc, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: deps.Now})
	srv := httptest.NewUnstartedServer(gw)
	srv.Listener = smallSendBuffer{srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		deps.Transport.CloseIdle()
		rt.Retire(nil)
	})
	return srv.URL, gw, reg
}

type smallSendBuffer struct{ net.Listener }

func (l smallSendBuffer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// unreadResponse sends body and returns the response once its head came,
// its body unread: the gateway's writes stop once the kernel buffers
// (the client's receive window, the gateway's small send buffer) are full.
func unreadResponse(t *testing.T, url, body string) *http.Response {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The answer is far larger than the kernel buffers between the gateway
// and a client that reads nothing, and smaller than the read-ahead cap:
// once the backend has finished, the client no longer holds the backend,
// its concurrency slot, its outstanding work or the admission slot; it
// still gets the whole answer afterwards. (With read-ahead off the
// backend's answer waits in the transport and the slots are never
// released: the first eventually fails.)
func TestSlowReaderReleasesTheBackendOnceItsAnswerIsReadAhead(t *testing.T) {
	be, beURL := newBigBackend(t, 1<<20, false)
	cfg := testConfig(beURL)
	cfg.Server.ResponseReadahead = 2 << 20
	url, gw, reg := readaheadGateway(t, cfg)

	resp := unreadResponse(t, url+"/v1/chat/completions", sampledBody)
	if cancelled := backendEnded(t, be); cancelled {
		t.Fatal("the backend's answer was cut")
	}
	pool := gw.Runtime().Pools["m1"]
	backend := pool.Backends[0]
	eventually(t, "the backend slot, its work and the admission slot released", func() bool {
		return backend.Inflight() == 0 && backend.Work() == 0 && pool.queue.Stats().InUse == 0
	})
	eventually(t, "the response counted as detached early", func() bool {
		return metricValue(t, reg, "sluice_readahead_detached_total") == 1
	})
	if held := metricValue(t, reg, "sluice_readahead_bytes"); held <= 0 || held > 2<<20 {
		t.Fatalf("read-ahead holds %v bytes for an unread 1 MiB answer, cap 2 MiB", held)
	}

	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, be.body) {
		t.Fatalf("the client got %d bytes (%v), want the backend's %d", len(body), err, len(be.body))
	}
	assertReadaheadReleased(t, reg)
	if n := metricValue(t, reg, "sluice_readahead_fallbacks_total", "reason", proxy.FallbackResponseCap); n != 0 {
		t.Fatalf("fallbacks %v for an answer under the cap", n)
	}
}

// An answer over a bound is read ahead only up to it, then paced by the
// client as without read-ahead: never more memory than the bound, and the
// clients still get whole answers.
func TestReadaheadOverItsBoundsFallsBackToBackPressure(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cap, memory config.ByteSize
		clients     int
		reason      string
	}{
		{name: "response cap", cap: 64 << 10, memory: 256 << 20, clients: 1, reason: proxy.FallbackResponseCap},
		// Two clients, one budget for one response: one of them finds the
		// budget full.
		{name: "global budget", cap: 128 << 10, memory: 128 << 10, clients: 2, reason: proxy.FallbackMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, beURL := newBigBackend(t, 1<<20, false)
			cfg := testConfig(beURL)
			cfg.Server.ResponseReadahead, cfg.Server.MaxReadaheadMemory = tc.cap, tc.memory
			cfg.Timeouts.StreamIdle = config.Duration(10 * time.Minute) // the backend is paced by the client, never idle
			url, _, reg := readaheadGateway(t, cfg)

			var resps []*http.Response
			for range tc.clients {
				resps = append(resps, unreadResponse(t, url+"/v1/chat/completions", sampledBody))
			}
			peak := 0.0
			sample := func() { peak = max(peak, metricValue(t, reg, "sluice_readahead_bytes")) }
			eventually(t, "the fallback counted", func() bool {
				sample()
				return metricValue(t, reg, "sluice_readahead_fallbacks_total", "reason", tc.reason) >= 1
			})
			for _, resp := range resps {
				body, err := io.ReadAll(&sampling{r: resp.Body, sample: sample})
				if err != nil || !bytes.Equal(body, be.body) {
					t.Fatalf("a client got %d bytes (%v), want the backend's %d", len(body), err, len(be.body))
				}
				if cancelled := backendEnded(t, be); cancelled {
					t.Fatal("the backend's answer was cut")
				}
			}
			if bound := float64(min(tc.memory, tc.cap*config.ByteSize(tc.clients))); peak <= 0 || peak > bound {
				t.Fatalf("read-ahead held up to %v bytes, bound %v", peak, bound)
			}
			assertReadaheadReleased(t, reg)
		})
	}
}

// assertReadaheadReleased checks, once every client has read its whole
// answer, that no read-ahead bytes are held. No waiting: the handler frees
// its blocks (ReadaheadWriter.Finish) before it returns, so before the
// client can read the end of the body.
func assertReadaheadReleased(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	if held := metricValue(t, reg, "sluice_readahead_bytes"); held != 0 {
		t.Fatalf("read-ahead holds %v bytes once every client has its whole answer", held)
	}
}

// sampling calls sample every 16 reads while the client reads.
type sampling struct {
	r      io.Reader
	n      int
	sample func()
}

func (s *sampling) Read(b []byte) (int, error) {
	if s.n++; s.n%16 == 0 {
		s.sample()
	}
	return s.r.Read(b)
}

// A client that keeps up gets each event as the backend sends it: the
// backend sends the next event only once the client has read the
// previous one, so an event held back by the read-ahead (not flushed)
// would stall the stream.
func TestReadaheadFlushesEachEventToAReaderThatKeepsUp(t *testing.T) {
	const events = 20
	// Each event is 8 KiB, so the read-ahead takes over (past its first
	// 64 KiB, which go straight to the client) before the middle event.
	pad := strings.Repeat("p", 8<<10)
	// Buffered for every event: the test's ack for event i never blocks
	// (a backend that ended early would leave an unbuffered send hanging),
	// and the backend still sends event i+1 only after the client saw i.
	ack := make(chan struct{}, events)
	beURL := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range events {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d %s\"}}]}\n\n", i, pad)
			w.(http.Flusher).Flush()
			select {
			case <-ack:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	cfg := testConfig(beURL)
	url, _, reg := readaheadGateway(t, cfg)

	resp := post(t, url+"/v1/chat/completions", `{"model":"m1","stream":true,"temperature":0.9,"messages":[{"role":"user","content":"x"}]}`)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := make(chan string)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") {
				got <- line
			}
		}
	}()
	for i := range events {
		select {
		case line := <-got:
			if want := fmt.Sprintf("t%d ", i); !strings.Contains(line, want) {
				t.Fatalf("event %d is %q, want %s", i, line, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d never reached the client: held in the read-ahead", i)
		}
		if i == events/2 {
			// The stream goes through the read-ahead: it keeps one block.
			if held := metricValue(t, reg, "sluice_readahead_bytes"); held != 16<<10 {
				t.Fatalf("read-ahead holds %v bytes mid-stream, want one 16 KiB block", held)
			}
		}
		ack <- struct{}{}
	}
	if line := <-got; line != "data: [DONE]" {
		t.Fatalf("last event %q", line)
	}
	if n := metricValue(t, reg, "sluice_readahead_fallbacks_total", "reason", proxy.FallbackMemory); n != 0 {
		t.Fatalf("fallbacks %v for a small stream", n)
	}
}

// A client that leaves frees its read-ahead and, when the relay was still
// waiting for it to make room, its backend: whether the backend had
// finished (detached) or not (the answer is over the cap).
func TestReadaheadOfAClientThatLeavesIsReleased(t *testing.T) {
	for _, tc := range []struct {
		name string
		cap  config.ByteSize
	}{
		{name: "backend finished", cap: 2 << 20},
		{name: "relay waiting for room", cap: 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, beURL := newBigBackend(t, 1<<20, false)
			cfg := testConfig(beURL)
			cfg.Server.ResponseReadahead = tc.cap
			cfg.Timeouts.StreamIdle = config.Duration(10 * time.Minute)
			url, gw, reg := readaheadGateway(t, cfg)

			resp := unreadResponse(t, url+"/v1/chat/completions", sampledBody)
			eventually(t, "the read-ahead holding bytes", func() bool { return metricValue(t, reg, "sluice_readahead_bytes") > 0 })
			resp.Body.Close() // closes the connection: its body was not read
			backend := gw.Runtime().Pools["m1"].Backends[0]
			eventually(t, "the backend and the read-ahead released", func() bool {
				return backend.Inflight() == 0 && metricValue(t, reg, "sluice_readahead_bytes") == 0
			})
		})
	}
}

// A client slow to take an answer over the read-ahead cap holds the relay
// in back-pressure; that is not the backend idling, so the stream-idle
// timeout must not cut the backend (and blame it) meanwhile: the watchdog
// is paused while the relay waits for the client.
//
// The watchdog runs on manual timers that fire only when the test fires
// them, and on a clock the test moves, so a loaded machine that pauses the
// backend's writes (which the stream-idle bound also times) cannot cut it.
// With the relay held by a client that reads nothing, the test moves the
// clock past the stream-idle bound and fires every armed timer, twice:
// none may cut the backend, however long the client takes. (With a real
// one-second bound and a three-second pause, a loaded machine did cut a
// healthy backend now and then.)
func TestBackPressureFromASlowClientIsNotABackendIdling(t *testing.T) {
	be, beURL := newBigBackend(t, 1<<20, false)
	cfg := testConfig(beURL)
	cfg.Server.ResponseReadahead = 64 << 10
	cfg.Timeouts.StreamIdle = config.Duration(time.Second)
	timers := &manualTimers{armed: map[*manualTimer]bool{}}
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	url, gw, reg := readaheadGatewayTimed(t, cfg, timers.afterFunc, now)

	resp := unreadResponse(t, url+"/v1/chat/completions", sampledBody)
	eventually(t, "the relay in back-pressure", func() bool {
		return metricValue(t, reg, "sluice_readahead_fallbacks_total", "reason", proxy.FallbackResponseCap) == 1
	})
	skew.Store(int64(10 * time.Second)) // ten stream-idle bounds with nothing from the backend
	timers.fireArmed()
	timers.fireArmed() // one a first firing rearmed, if any
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, be.body) {
		t.Fatalf("the client got %d bytes (%v), want the backend's %d", len(body), err, len(be.body))
	}
	if cancelled := backendEnded(t, be); cancelled {
		t.Fatal("the backend's answer was cut")
	}
	backend := gw.Runtime().Pools["m1"].Backends[0]
	eventually(t, "the backend released", func() bool { return backend.Inflight() == 0 })
	if fails := backend.Failures(); fails != 0 {
		t.Fatalf("the backend was blamed %d times for a slow client", fails)
	}
	if timers.made() == 0 {
		t.Fatal("the forwarder never used the injected timers")
	}
}

// manualTimers makes timers that fire only when the test fires them
// (fireArmed).
type manualTimers struct {
	mu    sync.Mutex
	armed map[*manualTimer]bool
	n     int
}

type manualTimer struct {
	m *manualTimers
	f func()
}

func (m *manualTimers) afterFunc(_ time.Duration, f func()) proxy.Timer {
	t := &manualTimer{m: m, f: f}
	m.mu.Lock()
	m.armed[t] = true
	m.n++
	m.mu.Unlock()
	return t
}

// fireArmed fires every armed timer, disarming each as a timer that goes
// off is.
func (m *manualTimers) fireArmed() {
	m.mu.Lock()
	var due []*manualTimer
	for t := range m.armed {
		due = append(due, t)
	}
	clear(m.armed)
	m.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

func (m *manualTimers) made() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

func (t *manualTimer) Stop() bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	was := t.m.armed[t]
	delete(t.m.armed, t)
	return was
}

func (t *manualTimer) Reset(time.Duration) bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	was := t.m.armed[t]
	t.m.armed[t] = true
	return was
}

package chaos

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// backendFault is what one backend of the pool does wrong. Faults are
// applied by a wrapper in front of the simulator, so every kind the issue
// lists is available whatever the simulator itself supports.
type backendFault int32

const (
	faultNone      backendFault = iota
	faultCrash                  // the stream is cut (connection reset) after a few chunks
	faultHang                   // the request is read, then nothing is ever answered
	faultGarbage                // 200 with bytes that are neither JSON nor SSE
	faultBrokenSSE              // 200 text/event-stream with malformed events and no [DONE]
	faultSlow                   // every byte of the answer ten times later than the simulator's
)

// pool is the simulated inference pool: n simulators, each behind a fault
// switch, on loopback listeners owned by the harness.
type pool struct {
	urls     []string
	sims     []*sim.Server
	switches []*faultSwitch
	srvs     []*http.Server
	wg       sync.WaitGroup
}

func startPool(n int, cfg sim.Config) (*pool, error) {
	p := &pool{}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.stop()
			return nil, err
		}
		c := cfg
		c.Seed = cfg.Seed + int64(i)
		s := sim.New(c)
		slow := sim.New(tenTimesSlower(c))
		sw := &faultSwitch{next: s, slow: slow, quit: make(chan struct{})}
		srv := &http.Server{Handler: sw, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
		p.sims = append(p.sims, s, slow)
		p.switches = append(p.switches, sw)
		p.srvs = append(p.srvs, srv)
		p.urls = append(p.urls, "http://"+ln.Addr().String())
		p.wg.Go(func() { srv.Serve(ln) })
	}
	return p, nil
}

// setFault sets backend i's fault; faultNone heals it.
func (p *pool) setFault(i int, f backendFault) { p.switches[i].mode.Store(int32(f)) }

func (p *pool) stop() {
	for _, sw := range p.switches {
		sw.close()
	}
	for _, s := range p.sims {
		s.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, srv := range p.srvs {
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}
	p.wg.Wait()
}

// tenTimesSlower is c with an engine ten times slower: prefill and every
// decode step. (Slowing the writes instead would not do: the simulator
// batches the tokens a slow writer missed into its next write.)
func tenTimesSlower(c sim.Config) sim.Config {
	c.DecodeStepBase *= 10
	c.DecodeStepPerSeq *= 10
	c.PrefillTokensPerSec /= 10
	return c
}

// faultSwitch passes requests to the simulator or misbehaves.
type faultSwitch struct {
	next      http.Handler
	slow      http.Handler // the same simulator, ten times slower
	mode      atomic.Int32
	quit      chan struct{} // ends hung handlers when the pool stops
	closeOnce sync.Once
}

func (f *faultSwitch) close() { f.closeOnce.Do(func() { close(f.quit) }) }

func (f *faultSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode := backendFault(f.mode.Load())
	if mode == faultSlow {
		f.slow.ServeHTTP(w, r) // metrics too: they show the slow engine's queue
		return
	}
	inference := strings.HasPrefix(r.URL.Path, "/v1/")
	if !inference || mode == faultNone {
		f.next.ServeHTTP(w, r)
		return
	}
	switch mode {
	case faultHang:
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-f.quit:
		}
	case faultGarbage:
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "\x00\xffnot json {{{ <html>garbage</html>\n")
	case faultBrokenSSE:
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"he\"\n\n")
		io.WriteString(w, "event: ???\ndata: {unterminated\n\nretry: -1\n\n")
	case faultCrash:
		f.next.ServeHTTP(&crashWriter{ResponseWriter: w, after: 3}, r)
	}
}

// crashWriter lets a few writes through, then aborts the handler, which
// makes net/http reset the connection mid-answer: a backend process dying.
type crashWriter struct {
	http.ResponseWriter
	after int
}

func (c *crashWriter) Write(b []byte) (int, error) {
	if c.after <= 0 {
		panic(http.ErrAbortHandler)
	}
	c.after--
	n, err := c.ResponseWriter.Write(b)
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}

func (c *crashWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

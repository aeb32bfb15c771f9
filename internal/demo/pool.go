package demo

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// simPool is one leg's simulated inference servers. Each leg gets a fresh
// pool, so no leg inherits another's queues, and the scale-out leg's
// actuator can start more while it runs.
type simPool struct {
	cfg sim.Config

	mu      sync.Mutex
	servers []*simServer
	wg      sync.WaitGroup // the servers' Serve goroutines
}

type simServer struct {
	sim *sim.Server
	srv *http.Server
	url string
}

func newSimPool(cfg sim.Config) *simPool { return &simPool{cfg: cfg} }

// start launches one more simulator on a free loopback port.
func (p *simPool) start() (*simServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cfg
	c.Seed += int64(len(p.servers))
	s := &simServer{sim: sim.New(c), url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{Handler: s.sim, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	p.servers = append(p.servers, s)
	// Serve's error is ErrServerClosed at stop; anything else shows in
	// the replay as the requests that failed.
	p.wg.Go(func() { _ = s.srv.Serve(ln) })
	return s, nil
}

// startN launches n simulators and returns their URLs.
func (p *simPool) startN(n int) ([]string, error) {
	var urls []string
	for range n {
		s, err := p.start()
		if err != nil {
			return nil, err
		}
		urls = append(urls, s.url)
	}
	return urls, nil
}

// size is the number of simulators started, cold or serving.
func (p *simPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.servers)
}

// busy returns the batch slots in use and in total over every simulator
// started (a cold one counts: it is paid for while it boots).
func (p *simPool) busy() (running, slots int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.servers {
		running += s.sim.Stats().Running
		slots += s.sim.Config().Slots
	}
	return running, slots
}

// stop fails what is still running and shuts every simulator down.
func (p *simPool) stop() {
	p.mu.Lock()
	servers := p.servers
	p.mu.Unlock()
	for _, s := range servers {
		s.sim.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		if s.srv.Shutdown(ctx) != nil {
			s.srv.Close()
		}
	}
	p.wg.Wait()
}

// utilisation samples the pool's slot use until stop is called, and
// returns busy slots / slots started, averaged over the samples.
type utilisation struct {
	stop func() float64
}

func sampleUtilisation(p *simPool, every time.Duration) utilisation {
	ctx, cancel := context.WithCancel(context.Background())
	var run, all float64
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r, s := p.busy()
				run += float64(r)
				all += float64(s)
			}
		}
	}()
	return utilisation{stop: func() float64 {
		cancel()
		<-done
		if all == 0 {
			return 0
		}
		return run / all
	}}
}

package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// shutdownGrace bounds how long stop waits for handlers to return after the
// simulators have failed their in-flight requests.
const shutdownGrace = 2 * time.Second

// ListenAndServeN starts n simulators on consecutive ports from addr
// ("127.0.0.1:9001" → 9001…9000+n; port 0 gives each a free port), each with
// cfg and Seed cfg.Seed+i so their texts and fault draws differ. It returns
// their base URLs ("http://127.0.0.1:9001") and a stop func that shuts all of
// them down and waits for their goroutines. Cancelling ctx also stops them;
// stop may be called any number of times. If any listener fails, the ones
// already started are stopped and the error is returned.
func ListenAndServeN(ctx context.Context, addr string, n int, cfg Config, logger *slog.Logger) (urls []string, stop func(), err error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("sim: server count must be at least 1, got %d", n)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: listen address %q: %w", addr, err)
	}
	// Said apart: "port must allow 1 consecutive ports" was all a user
	// typing port 99999 or "x" was told.
	port, err := strconv.Atoi(portStr)
	switch {
	case err != nil || port < 0 || port > 65535:
		return nil, nil, fmt.Errorf("sim: listen address %q: the port must be a number from 0 to 65535", addr)
	case port+n-1 > 65535:
		return nil, nil, fmt.Errorf("sim: listen address %q: %d servers on consecutive ports from %d would pass 65535", addr, n, port)
	}

	g := &serverGroup{}
	var lc net.ListenConfig
	for i := range n {
		p := port
		if port != 0 {
			p = port + i
		}
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			g.stop()
			return nil, nil, fmt.Errorf("sim: server %d: %w", i+1, err)
		}
		c := cfg
		c.Seed = cfg.Seed + int64(i)
		sim := New(c)
		srv := &http.Server{
			Handler:           sim,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		url := "http://" + ln.Addr().String()
		g.add(sim, srv)
		g.wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("sim server stopped", "url", url, "err", err)
			}
		})
		logger.Info("sim server listening", "url", url, "model", sim.cfg.Model, "seed", c.Seed)
		urls = append(urls, url)
	}
	unhook := context.AfterFunc(ctx, g.stop)
	return urls, func() { unhook(); g.stop() }, nil
}

// serverGroup owns the simulators and HTTP servers of one ListenAndServeN.
type serverGroup struct {
	once sync.Once
	wg   sync.WaitGroup // the Serve goroutines
	sims []*Server
	srvs []*http.Server
}

func (g *serverGroup) add(s *Server, srv *http.Server) {
	g.sims = append(g.sims, s)
	g.srvs = append(g.srvs, srv)
}

// stop fails in-flight requests first (so long streams end now instead of
// holding Shutdown up), then shuts the HTTP servers down gracefully within
// shutdownGrace and closes whatever is left.
func (g *serverGroup) stop() {
	g.once.Do(func() {
		for _, s := range g.sims {
			s.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		var wg sync.WaitGroup
		for _, srv := range g.srvs {
			wg.Go(func() {
				if err := srv.Shutdown(ctx); err != nil {
					srv.Close()
				}
			})
		}
		wg.Wait()
		g.wg.Wait()
	})
}

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procStats reads a child process' own resource use from /proc: the gateway
// runs as a child so that its RSS, fds and goroutines are not mixed with the
// harness' (simulators, attackers and the well-behaved client all live in
// the harness process).
type procStats struct {
	pid        int
	profileURL string       // the goroutine profile on the admin listener (admin.pprof)
	client     *http.Client // dials through observer
	observer   *observerConns
	rules      fdRules // what the leak target leaves out
}

// rssKiB returns VmRSS and VmHWM (peak RSS since start or the last
// resetPeak) in KiB.
func (p procStats) rssKiB() (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read status: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm, nil
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs "5"), so the
// next rssKiB's hwm is the peak of the scenario alone.
func (p procStats) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0)
}

// usage is one sample of the gateway's resources. FDs and Goroutines
// are what the leak target compares: they leave out what fdRules
// describes (the harness' own connections, the keep-alive pool to the
// backends, one connection per Redis node), which FDAccount details, and
// the goroutines of the harness' connections (one each) and of net/http's
// upstream pool (goroutineDump.Pool); Stacks names every goroutine's
// stack, for the notes of a failed leak target.
type usage struct {
	RSSKiB     int64
	FDs        int
	Goroutines int
	FDAccount  fdAccount
	Stacks     map[string]int
}

// sample reads the goroutine profile first, so that the request's own
// connection is open (and recognised as the observer's) when the fd table
// is read; the fd counts all come from one reading of that table.
func (p procStats) sample(ctx context.Context) (usage, error) {
	g, err := readGoroutines(ctx, p.client, p.profileURL)
	if err != nil {
		return usage{}, err
	}
	fds, err := readFDs(p.pid)
	if err != nil {
		return usage{}, err
	}
	rss, _, err := p.rssKiB()
	if err != nil {
		return usage{}, err
	}
	a := p.rules.account(fds)
	return usage{RSSKiB: rss, FDs: a.Counted(), Goroutines: countedGoroutines(g, a), FDAccount: a, Stacks: g.Stacks}, nil
}

// countedGoroutines is what the leak target compares: every goroutine but
// net/http's upstream pool's (counted by their stacks) and the one that
// serves each of the harness' own connections. The keep-alive pool's fds
// say nothing about its goroutines: the lean upstream client
// (internal/h1client, the default) runs none for an idle connection, and
// counting two per pooled fd made a pool that shrank during a scenario
// look like goroutines left behind (docs/RELIABILITY.md, "slow-readers:
// the leak target's phantom goroutines").
func countedGoroutines(g goroutineDump, a fdAccount) int {
	return g.Total - g.Pool - a.Observer
}

// observerConns remembers the local addresses of the harness' open
// connections to the gateway (health checks, /metrics scrapes), so that the
// gateway's end of them is not counted as the gateway's growth: the first
// sample would otherwise be taken before its own scrape connection existed.
type observerConns struct {
	mu    sync.Mutex
	local map[string]bool
}

func newObserverConns() *observerConns { return &observerConns{local: map[string]bool{}} }

// client is an HTTP client whose connections o knows.
func (o *observerConns) client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			key := c.LocalAddr().String()
			o.mu.Lock()
			o.local[key] = true
			o.mu.Unlock()
			return &observedConn{Conn: c, o: o, key: key}, nil
		},
	}}
}

// has reports whether addr is the local end of one of the open connections.
func (o *observerConns) has(addr string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.local[addr]
}

type observedConn struct {
	net.Conn
	o    *observerConns
	key  string
	once sync.Once
}

func (c *observedConn) Close() error {
	c.once.Do(func() {
		c.o.mu.Lock()
		delete(c.o.local, c.key)
		c.o.mu.Unlock()
	})
	return c.Conn.Close()
}

// within reports after ≤ before × (1 + 5%): the issue's "back within 5% of
// baseline".
func within(before, after int) bool {
	return float64(after) <= float64(before)*1.05
}

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
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
	metricURLs []string     // /metrics candidates, admin listener first
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

// goroutines scrapes go_goroutines from the gateway's /metrics: on the
// admin listener when it serves it, else on the main listener (where older
// gateways serve it). The harness dials from 127.0.0.1, never from the
// attackers' or the well-behaved client's addresses.
func (p procStats) goroutines(ctx context.Context) (int, error) {
	var last error
	for _, u := range p.metricURLs {
		n, err := scrapeGauge(ctx, p.client, u, "go_goroutines")
		if err == nil {
			return n, nil
		}
		last = err
	}
	return 0, last
}

func scrapeGauge(ctx context.Context, c *http.Client, url, name string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(name):]), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			return int(v), nil
		}
	}
	return 0, fmt.Errorf("%s: no %s sample", url, name)
}

// usage is one sample of the gateway's resources. FDs and Goroutines
// are what the leak target compares: they leave out what fdRules
// describes (the harness' own connections, the keep-alive pool to the
// backends with its two goroutines per connection, one connection per
// Redis node), which FDAccount details.
type usage struct {
	RSSKiB     int64
	FDs        int
	Goroutines int
	FDAccount  fdAccount
}

// sample scrapes the goroutine count first, so that the scrape's own
// connection is open (and recognised as the observer's) when the fd table
// is read; the fd counts all come from one reading of that table.
func (p procStats) sample(ctx context.Context) (usage, error) {
	g, err := p.goroutines(ctx)
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
	return usage{RSSKiB: rss, FDs: a.Counted(), Goroutines: g - 2*a.Pooled, FDAccount: a}, nil
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

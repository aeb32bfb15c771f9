package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStats reads a child process' own resource use from /proc: the gateway
// runs as a child so that its RSS, fds and goroutines are not mixed with the
// harness' (simulators, attackers and the well-behaved client all live in
// the harness process).
type procStats struct {
	pid        int
	metricURLs []string // /metrics candidates, admin listener first
	client     *http.Client
	backends   map[int]bool // the pool's ports, to tell the upstream pool apart
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

// fds counts the open file descriptors (sockets included) and, for
// diagnostics, the ones that are not sockets by what they point at.
func (p procStats) fds() (int, map[string]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", p.pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, fmt.Errorf("read fds: %w", err)
	}
	kinds := map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if strings.HasPrefix(l, "socket:") {
			kinds["socket"]++
			continue
		}
		if i := strings.IndexByte(l, ':'); i > 0 && !strings.HasPrefix(l, "/") {
			l = l[:i] // pipe:[123] -> pipe, anon_inode:[eventpoll] -> anon_inode
		}
		kinds[l]++
	}
	return len(ents), kinds, nil
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
// leave out the upstream keep-alive pool (see pooledUpstream), which
// Pooled counts.
type usage struct {
	RSSKiB     int64
	FDs        int
	Goroutines int
	Pooled     int
	Peers      map[string]int // sockets by local>remote address, for diagnostics
	Files      map[string]int // other fds by target, for diagnostics
}

func (p procStats) sample(ctx context.Context) (usage, error) {
	rss, _, err := p.rssKiB()
	if err != nil {
		return usage{}, err
	}
	fds, kinds, err := p.fds()
	if err != nil {
		return usage{}, err
	}
	g, err := p.goroutines(ctx)
	if err != nil {
		return usage{}, err
	}
	pooled, err := pooledUpstream(p.pid, p.backends)
	if err != nil {
		return usage{}, err
	}
	peers, err := socketPeers(p.pid)
	if err != nil {
		return usage{}, err
	}
	// Sockets not in the IPv4 TCP table (unix, UDP, TCPv6): by kind only.
	for _, n := range peers {
		kinds["socket"] -= n
	}
	kinds["socket (not IPv4 TCP)"] = kinds["socket"]
	delete(kinds, "socket")
	return usage{RSSKiB: rss, FDs: fds - pooled, Goroutines: g - 2*pooled, Pooled: pooled, Peers: peers, Files: kinds}, nil
}

// within reports after ≤ before × (1 + 5%): the issue's "back within 5% of
// baseline".
func within(before, after int) bool {
	return float64(after) <= float64(before)*1.05
}

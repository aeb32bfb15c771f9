package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The leak target's own tests run the harness against a stand-in for
// `sluice serve`: this test binary started as the gateway child
// (TestMain dispatches "serve" here). It reads the listeners and the
// backends from the config the harness wrote, holds poolPerBackend idle
// connections to each backend the way the lean upstream client does
// (an fd each, no goroutine) and restingGoroutines parked goroutines (a
// gateway at rest runs some 140: its loops, listeners and pools, against
// which the target's 5% is meant), serves /healthz on the main listener
// and go_goroutines (/metrics, which the harness read before it read the
// goroutine profile) and the goroutine profile (/debug/pprof/)
// on the admin listener, and on request (on the admin listener too)
// changes one thing at a time:
//
//	POST /shrink  closes the idle backend connections (a pool that shrank)
//	POST /leak    starts leakedGoroutines goroutines that never end (a leak)
//
// each done before the answer. Every HTTP exchange leaves a goroutine
// or two of net/http's exiting in the child after the client has its
// answer (the connection's background read), so a sample may count one
// or two more than the child runs at rest: the changes above are sized
// well past that and on either side of the 5%.
const (
	poolPerBackend    = 8
	restingGoroutines = 100
	leakedGoroutines  = 10
)

// fakeGateway runs the stand-in with `serve --config FILE` arguments until
// it is killed; it returns an exit code only when it cannot start.
func fakeGateway(args []string) int {
	if len(args) != 2 || args[0] != "--config" {
		fmt.Fprintln(os.Stderr, "fake gateway: want --config FILE")
		return 2
	}
	listen, admin, backends, err := readFakeConfig(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake gateway:", err)
		return 1
	}
	var mu sync.Mutex
	var pool []net.Conn
	for _, b := range backends {
		for range poolPerBackend {
			c, err := net.Dial("tcp", strings.TrimPrefix(b, "http://"))
			if err != nil {
				fmt.Fprintln(os.Stderr, "fake gateway:", err)
				return 1
			}
			pool = append(pool, c)
		}
	}
	never := make(chan struct{})
	for range restingGoroutines {
		go func() { <-never }()
	}
	pub := http.NewServeMux()
	pub.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	adm := http.NewServeMux()
	adm.HandleFunc("POST /shrink", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		for _, c := range pool {
			c.Close()
		}
		pool = nil
		mu.Unlock()
	})
	adm.HandleFunc("POST /leak", func(w http.ResponseWriter, r *http.Request) {
		for range leakedGoroutines {
			started := make(chan struct{})
			go leakForever(started, never)
			<-started
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	adm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	adm.HandleFunc("GET /debug/pprof/", pprof.Index)
	// Both listeners open before either serves: the harness takes the
	// gateway as started once /healthz answers.
	lns := map[string]net.Listener{}
	for _, addr := range []string{admin, listen} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake gateway:", err)
			return 1
		}
		lns[addr] = ln
	}
	errs := make(chan error, 2)
	go func() { errs <- http.Serve(lns[admin], adm) }()
	go func() { errs <- http.Serve(lns[listen], pub) }()
	fmt.Fprintln(os.Stderr, "fake gateway:", <-errs)
	return 1
}

// leakForever is the deliberately leaked goroutine: it waits on a channel
// nothing closes.
func leakForever(started chan<- struct{}, never <-chan struct{}) {
	close(started)
	<-never
}

// readFakeConfig takes the main and admin listeners and the backends'
// URLs from the harness' config (gatewaySpec.yaml).
func readFakeConfig(path string) (listen, admin string, backends []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", nil, err
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			section, _, _ = strings.Cut(line, ":")
		}
		key, val, _ := strings.Cut(strings.TrimSpace(line), ": ")
		switch {
		case section == "listen":
			listen = val
		case section == "admin" && key == "listen":
			admin = val
		case key == "- url":
			backends = append(backends, val)
		}
	}
	if listen == "" || admin == "" {
		return "", "", nil, fmt.Errorf("%s: no listen or admin.listen", path)
	}
	return listen, admin, backends, sc.Err()
}

// startFakeGateway starts this test binary as the harness' gateway child
// against one backend listener that accepts and holds connections, and
// returns it running.
func startFakeGateway(t *testing.T) *gateway {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	})
	t.Cleanup(func() {
		backend.Close()
		wg.Wait()
		for _, c := range held {
			c.Close()
		}
	})
	gw, err := newGateway(exe, t.TempDir(), []string{"http://" + backend.Addr().String()}, gatewaySpec{QueueOff: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.stop)
	return gw
}

// post sends the fake gateway a request on the harness' own (observer)
// connection, so it adds no connection of its own.
func post(t *testing.T, gw *gateway, url string) {
	t.Helper()
	resp, err := gw.proc().client.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// TestLeakTargetIgnoresAShrinkingUpstreamPool: the gateway's keep-alive
// pool to the backends shrinks (here from 8 connections to none) and
// nothing else changes. That is no leak, and the leak target must pass.
// It failed when the count took two goroutines off per pooled fd
// (net/http's readLoop and writeLoop): the lean upstream client runs none,
// so each connection the pool lost read as two goroutines left behind
// (docs/RELIABILITY.md, "slow-readers: the leak target's phantom
// goroutines").
func TestLeakTargetIgnoresAShrinkingUpstreamPool(t *testing.T) {
	before, after := sampleAround(t, "/shrink")
	if before.FDAccount.Pooled != poolPerBackend {
		t.Fatalf("pooled before = %d, want %d", before.FDAccount.Pooled, poolPerBackend)
	}
	if after.FDAccount.Pooled != 0 {
		t.Fatalf("pooled after = %d, want 0", after.FDAccount.Pooled)
	}
	row := Row{Before: before, After: after}
	if got := row.leakTarget(); got != "PASS" {
		t.Errorf("leak target %s for a pool that shrank: goroutines %d -> %d, fds %d -> %d",
			got, before.Goroutines, after.Goroutines, before.FDs, after.FDs)
	}
}

// sampleAround samples a stand-in gateway's process before and after
// asking its admin listener for path (what the test does to it).
func sampleAround(t *testing.T, path string) (before, after usage) {
	t.Helper()
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("needs Linux /proc")
	}
	gw := startFakeGateway(t)
	ctx := context.Background()
	before, err := gw.proc().sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	post(t, gw, "http://"+gw.admin+path)
	if after, err = gw.proc().sample(ctx); err != nil {
		t.Fatal(err)
	}
	return before, after
}

package gateway

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// parkedStreamBackend accepts connections and answers every request on them
// with a stream's head and one event, then holds it open without a
// goroutine per connection (the kernel buffers the request it never
// reads), so that the process's stack memory per held stream is the
// gateway's alone.
func parkedStreamBackend(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() { // owned by the test: stops when the listener closes
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			const ev = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(ev), ev)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

// BenchmarkHeldStreamStack holds b.N streams open through the gateway (the
// connection's goroutine waiting in the relay's read of the backend) and
// reports the process's stack memory per held stream (stack-KiB/stream),
// with client and backend held without goroutines: the connection's
// goroutine and net/http's background read of the client (2 KiB) are all
// there is. ~10.5 since the first write runs on a worker (deepcall.go
// in proxy): the connection's goroutine at 8 KiB (18.2 before, at 16).
// Run with STACKPROBE=1 GOTRACEBACK=system to find where it grows past
// 8 KiB: the stack limit is set to 8 KiB once the first stream is held,
// and the growth crashes the process with the traceback of the call that
// crossed, each frame with its fp and sp.
//
//	STACKPROBE=1 GOTRACEBACK=system go test -run '^$' -bench HeldStreamStack -benchtime 200x ./internal/gateway
func BenchmarkHeldStreamStack(b *testing.B) {
	open := heldStreams(b, &testing.T{})
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if os.Getenv("STACKPROBE") != "" {
		growStack(64) // this goroutine's own stack past 8 KiB first: the probe is for the gateway's
		// Restored before the next run of the benchmark, whose goroutine
		// starts small.
		defer debug.SetMaxStack(debug.SetMaxStack(8192))
	}
	b.ResetTimer()
	for range b.N {
		open()
	}
	b.StopTimer()
	runtime.GC() // a collection shrinks a stack a quarter used
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/float64(b.N)/1024, "stack-KiB/stream")
}

// A held stream's connection goroutine stays within an 8 KiB stack
// through its wait, first write and relay: 100 streams held through a real
// gateway add at most 12 KiB of goroutine stacks each (8 KiB for the
// connection's goroutine, 2 for net/http's background read, the rest
// margin for the test process's own goroutines). With the first write on
// the stream's own goroutine each added 18 (the first flush grew its
// stack to 16 KiB, which a waiting stream's ~6 KiB of frames keep). Stack
// sizes do not depend on timing; the race detector's instrumented frames
// are larger, so it is skipped under -race.
func TestHeldStreamStackStays8KiB(t *testing.T) {
	if raceEnabled {
		t.Skip("frames under -race are larger than in the build this bounds")
	}
	const streams = 100
	open := heldStreams(t, t)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for range streams {
		open()
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perStream := float64(int64(m1.StackInuse)-int64(m0.StackInuse)) / streams / 1024
	if perStream > 12 {
		t.Fatalf("goroutine stacks per held stream: %.1f KiB, want <= 12 (the connection's goroutine at 8 KiB)", perStream)
	}
	t.Logf("goroutine stacks per held stream: %.1f KiB", perStream)
}

// heldStreams starts a gateway in front of a parkedStreamBackend, opens
// one stream through it (so the pools and the lazily started goroutines
// are there before a baseline) and returns a func that opens one more,
// held until tb ends. t is startGateway's (a zero T from a benchmark).
func heldStreams(tb testing.TB, t *testing.T) (open func()) {
	cfg := testConfig(parkedStreamBackend(tb))
	cfg.Models[0].Backends[0].MaxConcurrency = 10000
	srv, _ := startGateway(t, cfg)
	tb.Cleanup(func() { srv.Close() })
	addr := strings.TrimPrefix(srv.URL, "http://")
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":1000,"stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	open = func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		if _, err := c.Write([]byte(req)); err != nil {
			tb.Fatal(err)
		}
		br := bufio.NewReader(c)
		status, err := br.ReadString('\n')
		if err != nil || !strings.Contains(status, " 200 ") {
			tb.Fatalf("status %q: %v", status, err)
		}
		for { // until the relayed event: the stream is under way
			line, err := br.ReadString('\n')
			if err != nil {
				tb.Fatalf("reading the stream: %v", err)
			}
			if strings.HasPrefix(line, "data: ") {
				return
			}
		}
	}
	open()
	return open
}

// growStack uses n KiB of the calling goroutine's stack, so that it has
// grown that far before debug.SetMaxStack caps the growth of the others.
//
//go:noinline
func growStack(n int) byte {
	var pad [1024]byte
	if n <= 1 {
		return pad[0]
	}
	pad[n%len(pad)] = byte(n)
	return growStack(n-1) + pad[(n+1)%len(pad)]
}

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
// there is. 18.2 today: the connection's goroutine at 16 KiB. Run with
// STACKPROBE=1 GOTRACEBACK=system to find where it grows past 8 KiB: the
// stack limit is set to 8 KiB once the first stream is held, and the
// growth crashes the process with the traceback of the call that crossed,
// each frame with its fp and sp.
//
//	STACKPROBE=1 GOTRACEBACK=system go test -run '^$' -bench HeldStreamStack -benchtime 200x ./internal/gateway
func BenchmarkHeldStreamStack(b *testing.B) {
	t := &testing.T{}
	cfg := testConfig(parkedStreamBackend(b))
	cfg.Models[0].Backends[0].MaxConcurrency = 2*b.N + 2
	srv, _ := startGateway(t, cfg)
	b.Cleanup(func() { srv.Close() })
	addr := strings.TrimPrefix(srv.URL, "http://")
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":1000,"stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)

	open := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(c)
		status, err := br.ReadString('\n')
		if err != nil || !strings.Contains(status, " 200 ") {
			b.Fatalf("status %q: %v", status, err)
		}
		for { // until the relayed event: the stream is under way
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatalf("reading the stream: %v", err)
			}
			if strings.HasPrefix(line, "data: ") {
				return c
			}
		}
	}
	// One stream first, so the pools and the lazily started goroutines of
	// the gateway are there before the baseline.
	first := open()
	defer first.Close()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	conns := make([]net.Conn, 0, b.N)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if os.Getenv("STACKPROBE") != "" {
		growStack(64) // this goroutine's own stack past 8 KiB first: the probe is for the gateway's
		// Restored before the next run of the benchmark, whose goroutine
		// starts small.
		defer debug.SetMaxStack(debug.SetMaxStack(8192))
	}
	b.ResetTimer()
	for range b.N {
		conns = append(conns, open())
	}
	b.StopTimer()
	runtime.GC() // a collection shrinks a stack a quarter used
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/float64(b.N)/1024, "stack-KiB/stream")
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

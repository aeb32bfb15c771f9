package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tlsH1Backend is an https backend that speaks HTTP/1.1 only (no h2 in
// its ALPN), as a vLLM behind a TLS terminator without h2 does. Each
// answer sends its head and a first event, then holds until release.
func tlsH1Backend(t testing.TB, release chan struct{}) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// transportTo is NewTransport trusting srv's certificate. Its connect
// and TLS handshake bound is a minute, a hang guard: at 10 s a starved
// machine gave a handshake up and the test failed on "TLS handshake
// timeout" with nothing wrong (flakes11).
func transportTo(srv *httptest.Server) *http.Transport {
	tr := NewTransport(time.Minute)
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	return tr
}

// heldStreamsHeap is the live heap per stream held open through tr to
// srv (each past its first event), client and server side together.
func heldStreamsHeap(t *testing.T, srv *httptest.Server, tr *http.Transport, n int) uint64 {
	var before, after runtime.MemStats
	// Twice: the first moves the pools' buffers (sync.Pool, earlier
	// tests' clients') to their victim caches, the second frees them.
	// Once, they were freed between the two samples, and a run of many
	// tests in one process saw the heap shrink under held streams (an
	// unsigned difference of about 2^58 bytes a stream).
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	bodies := make([]io.ReadCloser, 0, n)
	for range n {
		resp, err := tr.RoundTrip(mustRequest(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 1 {
			t.Fatalf("answered over %s, want HTTP/1.1", resp.Proto)
		}
		if _, err := bufio.NewReaderSize(resp.Body, 16).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	for _, b := range bodies {
		b.Close()
	}
	return (after.HeapAlloc - before.HeapAlloc) / uint64(n)
}

func mustRequest(t testing.TB, url string) *http.Request {
	if !strings.Contains(url, "/?") {
		url += "/v1/chat/completions"
	}
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestHeldHTTPS1StreamHeap: a stream held to an https backend that speaks
// HTTP/1.1 costs the transport's connection buffers for its whole life.
// With 32 KiB read and write buffers (before) that was 97 KiB of live heap
// per held stream here, client and server together; with net/http's 4 KiB
// ones, 41 (the rest: both sides' TLS state and the server's buffers).
func TestHeldHTTPS1StreamHeap(t *testing.T) {
	release := make(chan struct{})
	srv := tlsH1Backend(t, release)
	defer close(release)
	tr := transportTo(srv)
	defer tr.CloseIdleConnections()
	const n = 64
	per := heldStreamsHeap(t, srv, tr, n)
	t.Logf("live heap per held stream: %d B", per)
	if per > 64<<10 {
		t.Fatalf("live heap per held stream %d KiB, want under 64", per>>10)
	}
}

// BenchmarkHTTPS1LargeAnswer reads 1 MiB non-stream answers from an https
// HTTP/1.1 backend as the relay does (32 KiB reads), through NewTransport
// with net/http's 4 KiB connection buffers (buf=4KiB) and with the 32 KiB
// ones it had before (buf=32KiB), with a Content-Length and chunked.
func BenchmarkHTTPS1LargeAnswer(b *testing.B) {
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", "1048576")
		}
		w.Write(payload)
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	b.Cleanup(srv.Close)
	for _, size := range []int{4 << 10, 32 << 10} {
		for _, framing := range []string{"length", "chunked"} {
			b.Run(fmt.Sprintf("buf=%dKiB/%s", size>>10, framing), func(b *testing.B) {
				tr := transportTo(srv)
				tr.ReadBufferSize, tr.WriteBufferSize = size, size
				defer tr.CloseIdleConnections()
				url := srv.URL
				if framing == "chunked" {
					url += "/?chunked=1"
				}
				buf := make([]byte, 32<<10)
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					resp, err := tr.RoundTrip(mustRequest(b, url))
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					for {
						m, err := resp.Body.Read(buf)
						n += m
						if err != nil {
							break
						}
					}
					resp.Body.Close()
					if n != len(payload) {
						b.Fatalf("read %d bytes, want %d", n, len(payload))
					}
				}
			})
		}
	}
}

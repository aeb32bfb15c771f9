// Command bareproxy is the floor for bench/proxy-overhead.sh: the least a
// net/http reverse proxy does. A net/http server, one shared http.Transport
// (Sluice's settings: proxy.NewTransport), the request body read into
// memory first (as Sluice does; net/http then sends it with the headers in
// one write), RoundTrip and io.CopyBuffer through a pooled 32 KiB buffer;
// hop-by-hop headers are not stripped, no policy, no metrics.
// Sluice / bareproxy is what Sluice adds; bareproxy / nginx is what
// net/http costs.
//
// --client lean swaps the transport for internal/h1client (HTTP/1.1 read
// and written inline in the handler's goroutine, no per-connection
// goroutines), to measure what net/http's Transport costs on its own.
//
//	go run ./bench/bareproxy --listen 127.0.0.1:19105 --backend 127.0.0.1:19101 [--client lean]
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"maps"
	"net/http"
	_ "net/http/pprof" // on DefaultServeMux, served only with --pprof
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/h1client"
	"github.com/sluice-gw/sluice/internal/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:19105", "address to serve on")
	backend := flag.String("backend", "127.0.0.1:19101", "backend host:port (http)")
	client := flag.String("client", "nethttp", "upstream client: nethttp (http.Transport) or lean (internal/h1client)")
	pprofAddr := flag.String("pprof", "", "serve Go's /debug/pprof on this further `ADDR` (a runtime trace to compare with Sluice's --pprof)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Fatal(http.ListenAndServe(*pprofAddr, nil)) }() // DefaultServeMux: net/http/pprof's handlers
	}
	var transport http.RoundTripper = proxy.NewTransport(5 * time.Second)
	switch *client {
	case "lean":
		transport = h1client.New(h1client.Options{ConnectTimeout: 5 * time.Second, Fallback: transport})
	case "nethttp":
	default:
		log.Fatalf("--client: %q is neither nethttp nor lean", *client)
	}
	bufs := sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := *r // shallow; headers copied once
		u := *r.URL
		u.Scheme, u.Host = "http", *backend
		out.URL, out.Host, out.RequestURI, out.Header = &u, "", "", r.Header.Clone()
		if n := r.ContentLength; n > 0 && n <= 1<<20 {
			// Read first, as Sluice does: a body net/http knows is in
			// memory leaves with the headers in one write, not two.
			body := make([]byte, n)
			if _, err := io.ReadFull(r.Body, body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := transport.RoundTrip(&out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		io.CopyBuffer(struct{ io.Writer }{w}, resp.Body, *buf) // hide ReadFrom: use the pooled buffer
	})
	log.Fatal(http.ListenAndServe(*listen, handler))
}

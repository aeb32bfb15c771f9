package gateway

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// serveGuarded serves cfg behind the listener's connection layer, as the
// binary does (answerThenDiscard needs its connection), and returns the
// address.
func serveGuarded(t *testing.T, cfg *config.Config) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := netguard.NewListener(ln, netguard.ConnLimits{Total: 64, Linger: netguard.DefaultLinger()}, nil)
	gl.ScanFraming()
	srv := &http.Server{Handler: netguard.Guard(gw), ConnContext: gl.ConnContext, ConnState: gl.ConnState}
	go srv.Serve(gl)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })
	return ln.Addr().String()
}

// server.discard reaches the discard of a refused body's rest: a 404
// given before a 2000-byte body was read keeps its connection by default
// (the rest, sent after the answer, is read and dropped), and closes it
// with server.discard.max_bytes under the body's length (not read at all,
// as net/http does past its own bound). Before the keys, the bounds were
// netguard's constants whatever the file said.
func TestServerDiscardMaxBytesApplies(t *testing.T) {
	const announced = 2000
	for _, tc := range []struct {
		name     string
		maxBytes config.ByteSize
		closes   bool
	}{{"default", 0, false}, {"under the body", 1000, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(newOKBackend(t).URL)
			if tc.maxBytes != 0 {
				cfg.Server.Discard.MaxBytes = tc.maxBytes
			}
			addr := serveGuarded(t, cfg)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
			io.WriteString(c, "POST /v1/nowhere HTTP/1.1\r\nHost: sluice\r\nContent-Length: 2000\r\n\r\n0123456789")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusNotFound || resp.Close != tc.closes {
				t.Fatalf("status %d, Connection: close %v; want 404, %v", resp.StatusCode, resp.Close, tc.closes)
			}
			if tc.closes {
				return
			}
			io.WriteString(c, strings.Repeat(" ", announced-10))
			io.WriteString(c, "GET /v1/nowhere HTTP/1.1\r\nHost: sluice\r\n\r\n")
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusNotFound {
				t.Fatalf("the next request on the kept connection: %v", err)
			}
		})
	}
}

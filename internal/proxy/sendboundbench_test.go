package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// drainingTLSServer reads every body whole and answers at once, over
// HTTP/1.1 or HTTP/2.
func drainingTLSServer(t testing.TB, h2 bool) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"ok":true}`)
	}))
	srv.EnableHTTP2 = h2
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// BenchmarkSendBoundHTTPS: a round trip to an https backend that drains
// the body, with and without the send bound, per body size and protocol
// (-benchmem: what the bound adds per request).
func BenchmarkSendBoundHTTPS(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		srv := drainingTLSServer(b, h2)
		for _, size := range []int{1 << 10, 256 << 10} {
			body := bytes.Repeat([]byte("x"), size)
			for _, bound := range []bool{false, true} {
				b.Run(fmt.Sprintf("h2=%v/body=%dKiB/bound=%v", h2, size>>10, bound), func(b *testing.B) {
					tr := transportTo(srv)
					defer tr.CloseIdleConnections()
					b.ReportAllocs()
					b.SetBytes(int64(size))
					for b.Loop() {
						req := mustRequest(b, srv.URL)
						req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(size)
						var resp *http.Response
						var err error
						if bound && watchSend(req, time.Minute) {
							resp, err = roundTripBounded(tr.RoundTrip, req, time.Minute, realAfterFunc)
						} else {
							resp, err = tr.RoundTrip(req)
						}
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			}
		}
	}
}

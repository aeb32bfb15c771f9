package netguard

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/framing"
)

// nopWriter is a ResponseWriter that keeps nothing: the benchmark times
// Guard, not an answer.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkGuard is Guard's cost on a scanning connection for a request
// of 12 header fields (what an OpenAI SDK sends, about): the head fed to
// the connection's scanner, then Guard's ServeHTTP over a handler that
// does nothing. The header-field limit is counted in the scan (Feed), not
// by ranging over the header map.
func BenchmarkGuard(b *testing.B) {
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nUser-Agent: OpenAI/Python 1.50.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nAuthorization: Bearer sk-test\r\n" +
		"Content-Type: application/json\r\nX-Stainless-Lang: python\r\nX-Stainless-Os: Linux\r\n" +
		"X-Stainless-Arch: x64\r\nX-Stainless-Runtime: CPython\r\nX-Stainless-Retry-Count: 0\r\n" +
		"Connection: keep-alive\r\nContent-Length: 0\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		b.Fatal(err)
	}
	if len(r.Header) != 12 {
		b.Fatalf("%d header fields, want 12", len(r.Header))
	}
	c := &conn{scan: true, fr: framing.NewScanner(MaxHeaderFields)}
	r = r.WithContext(context.WithValue(context.Background(), connKey{}, c))
	g := Guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := &nopWriter{h: http.Header{}}
	p := []byte(head)
	b.ReportAllocs()
	for b.Loop() {
		c.fr.Feed(p)
		g.ServeHTTP(w, r)
	}
}

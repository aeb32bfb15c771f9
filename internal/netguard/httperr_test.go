package netguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHandlerAnswersLikeServerRefusalsPassUnchanged: only net/http's own
// refusals are rewritten as OpenAI errors; a handler answering with the
// same status, Content-Type, Connection and text (a relayed backend's 400
// or 417) reaches the client byte for byte, since net/http adds a Date and
// a length to every handler answer.
func TestHandlerAnswersLikeServerRefusalsPassUnchanged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, ConnLimits{Total: 10}, NewConnMetrics(prometheus.NewRegistry()))
	srv := &http.Server{ConnState: l.ConnState, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		switch r.URL.Path {
		case "/400":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "400 Bad Request")
		case "/417":
			w.WriteHeader(http.StatusExpectationFailed)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	for _, c := range []struct {
		path string
		want int
		body string
	}{{"/400", 400, "400 Bad Request"}, {"/417", 417, ""}} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, "GET "+c.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != c.want || string(b) != c.body || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: %d %q %q, want the handler's answer unchanged", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
}

// TestServerRefusalRecognisesOnlyExactReplies: the recogniser takes
// net/http's reply forms and nothing near them.
func TestServerRefusalRecognisesOnlyExactReplies(t *testing.T) {
	const eh = serverErrorHeaders
	for _, c := range []struct {
		in   string
		want int // 0: not recognised
	}{
		{"HTTP/1.1 400 Bad Request" + eh + "400 Bad Request", 400},
		{"HTTP/1.1 400 Bad Request: invalid header name" + eh + "400 Bad Request: invalid header name", 400},
		{"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + eh + "505 HTTP Version Not Supported: unsupported protocol version", 505},
		{"HTTP/1.1 501 Not Implemented" + eh + "Unsupported transfer encoding", 501},
		{"HTTP/1.1 431 Request Header Fields Too Large" + eh + "431 Request Header Fields Too Large", 431},
		{"HTTP/1.1 400 Bad Request" + eh + "400 Bad Request and more", 0},
		{"HTTP/1.1 400 Bad Request" + eh + "Unsupported transfer encoding", 0},
		{"HTTP/1.1 400 Bad Request\r\nDate: x" + eh + "400 Bad Request", 0},
		{"HTTP/1.0 400 Bad Request" + eh + "400 Bad Request", 0},
		{"HTTP/1.1 4x0 Bad Request" + eh + "4x0 Bad Request", 0},
	} {
		e := serverRefusal([]byte(c.in))
		switch {
		case c.want == 0 && e != nil:
			t.Errorf("%q rewritten", c.in)
		case c.want != 0 && e == nil:
			t.Errorf("%q not recognised", c.in)
		case c.want != 0:
			answer, _ := errorAnswer(e, time.Now())
			got := string(answer)
			if !strings.HasPrefix(got, "HTTP/1.1 "+strconv.Itoa(c.want)+" ") || !strings.Contains(got, "\r\nContent-Type: application/json\r\n") {
				t.Errorf("%q: got %q", c.in, got)
			}
		}
	}
	if expectationRefusal([]byte("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: Fri, 04 Dec 2026 22:36:59 GMT\r\nContent-Length: 0\r\n\r\n")) == nil {
		t.Error("net/http's 417 not recognised")
	}
	if expectationRefusal([]byte("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: x\r\nX-Request-Id: y\r\nContent-Length: 0\r\n\r\n")) != nil {
		t.Error("a handler's 417 rewritten")
	}
}

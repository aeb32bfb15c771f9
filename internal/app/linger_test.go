package app

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A client that is still sending an oversized header or body when the
// gateway answers reads the answer: the gateway half-closes and drains
// (lingering close) instead of closing with the client's bytes unread,
// which makes the kernel reset the connection and the client lose the
// answer. Each client here keeps writing all it meant to send, as curl
// or a naive SDK does, and must both finish writing and read the answer.
func TestOversizedRequestsAreAnsweredNotReset(t *testing.T) {
	host, admin := startWireApp(t, backend(t, "a").URL, "max_body_bytes: 1MiB\nserver:\n  max_header_bytes: 64KiB\n")

	body := bytes.Repeat([]byte("a"), 9<<20)
	chunked := func() []byte {
		var out bytes.Buffer
		for p := body; len(p) > 0; p = p[min(len(p), 64<<10):] {
			n := min(len(p), 64<<10)
			fmt.Fprintf(&out, "%x\r\n%s\r\n", n, p[:n])
		}
		out.WriteString("0\r\n\r\n")
		return out.Bytes()
	}()
	const post = "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
	cases := []struct {
		name string
		req  []byte
		want int
		code string // the OpenAI error code the answer names
	}{
		{"2 MiB header", []byte(post + "X-Pad: " + strings.Repeat("p", 2<<20) + "\r\nContent-Length: 2\r\n\r\n{}"), http.StatusRequestHeaderFieldsTooLarge, "request_header_too_large"},
		{"9 MiB body with Content-Length", append([]byte(post+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))), body...), http.StatusRequestEntityTooLarge, "request_too_large"},
		{"9 MiB chunked body", append([]byte(post+"Transfer-Encoding: chunked\r\n\r\n"), chunked...), http.StatusRequestEntityTooLarge, "request_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, got := rawExchange(t, host, tc.req) // fails on a reset while sending
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
			if !strings.Contains(string(got), `"code":"`+tc.code+`"`) || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("answer %s, want an OpenAI error", got)
			}
		})
	}
	// Each client closed after reading: every drain ended at its EOF.
	eventually(t, "three lingering closes ended by the client", func() bool {
		return strings.Contains(metric(t, admin, "sluice_connection_lingers_total"), `sluice_connection_lingers_total{end="eof"} 3`)
	})
	if m := metric(t, admin, "sluice_connections_lingering"); !strings.Contains(m, "sluice_connections_lingering 0") {
		t.Errorf("lingering gauge after the drains: %s", m)
	}
}

package netguard

import (
	"strings"
	"testing"
)

// FuzzServerRefusal drives serverRefusal, which reads the bytes net/http
// writes to a connection for the requests it refuses itself, with any
// write, and with refusals built from any status and reason. Properties:
// no panic; nil, or an error whose status is the three digits written,
// 400..599, marked final, its message bounded; each of net/http's own
// refusals is recognised.
func FuzzServerRefusal(f *testing.F) {
	f.Add([]byte("HTTP/1.1 400 Bad Request: invalid header name"+serverErrorHeaders+"400 Bad Request: invalid header name"), "400", "Bad Request: missing required Host header")
	f.Add([]byte("HTTP/1.1 501 Not Implemented"+serverErrorHeaders+"Unsupported transfer encoding"), "431", "Request Header Fields Too Large")
	f.Add([]byte("HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version"+serverErrorHeaders+"505 HTTP Version Not Supported: unsupported protocol version"), "+40", "x")
	f.Add([]byte("HTTP/1.1 200 OK\r\nDate: x\r\n\r\n"), "-99", "")
	f.Fuzz(func(t *testing.T, p []byte, status, reason string) {
		check(t, p)
		line := status + " " + reason
		check(t, []byte("HTTP/1.1 "+line+serverErrorHeaders+line))
	})
}

func check(t *testing.T, p []byte) {
	t.Helper()
	e := serverRefusal(p)
	if e == nil {
		return
	}
	written := string(p[len("HTTP/1.1 "):][:3])
	if e.Status < 400 || e.Status > 599 || strings.Trim(written, "0123456789") != "" || written[0] == '0' {
		t.Fatalf("%q read as status %d", p, e.Status)
	}
	if !e.Final || len(e.Message) > 700 || e.Code == "" {
		t.Fatalf("%q read as %+v", p, e)
	}
}

// Package tlsterm terminates TLS on the client listener: the certificate
// it serves, swapped whole on a reload so a renewed pair needs no restart,
// and the transport netguard puts beneath its connection layer, which
// scans the decrypted bytes (netguard.Listener.WrapTransport). Only HTTP/1.1 is offered (ALPN
// http/1.1): the framing scan reads HTTP/1 and net/http serves the
// decrypted connection as such. Cipher suites are Go's defaults.
package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// LoadPair reads a PEM certificate chain (leaf first) and its private key,
// naming the config keys they come from when they do not load.
func LoadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s, tls.key_file %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}

// Terminator serves the certificate last stored (Store) to every new
// handshake; connections already up keep theirs. Safe for concurrent use.
type Terminator struct {
	cert atomic.Pointer[tls.Certificate]
	cfg  *tls.Config
}

// New is a Terminator serving cert, accepting minVersion and up.
func New(cert *tls.Certificate, minVersion uint16) *Terminator {
	t := &Terminator{}
	t.cert.Store(cert)
	t.cfg = &tls.Config{
		MinVersion: minVersion,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.cert.Load(), nil
		},
	}
	return t
}

// Store has the next handshakes served cert (a reload's new pair).
func (t *Terminator) Store(cert *tls.Certificate) { t.cert.Store(cert) }

// Wrap is the TLS server side of c, for netguard.Listener.WrapTransport.
// The handshake runs on the first read, under the read deadline net/http
// sets for the request head (server.read_header_timeout), so a client that
// never finishes it is cut as one that never sends its head is.
func (t *Terminator) Wrap(c net.Conn) net.Conn { return &conn{Conn: tls.Server(c, t.cfg)} }

// conn answers a plain-HTTP request on the TLS port, as net/http does on
// its own TLS listeners, with a 400 saying so (in plain HTTP, the only
// thing such a client reads) rather than a bare close.
type conn struct {
	*tls.Conn
	answered bool // the plain-HTTP 400 was tried; touched by the one reader only
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !c.answered {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			c.answered = true
			answerPlainHTTP(re.Conn)
		}
	}
	return n, err
}

// HandshakeComplete reports whether the handshake finished, for the
// refusal tier (netguard), which has nothing to say to a client that
// cannot read TLS.
func (c *conn) HandshakeComplete() bool { return c.ConnectionState().HandshakeComplete }

// NetConn is the TLS connection, for the hooks of other layers that look
// for theirs beneath.
func (c *conn) NetConn() net.Conn { return c.Conn }

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1 request line (net/http's tlsRecordHeaderLooksLikeHTTP).
func looksLikeHTTP(h [5]byte) bool {
	switch string(h[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

// plainHTTPWrite bounds writing the 400: it fits in any socket buffer.
const plainHTTPWrite = time.Second

var plainHTTPAnswer = func() []byte {
	body := (&openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "tls_required",
		Message: "this port speaks HTTPS: the request was sent in plain HTTP; use https://"}).JSON()
	return fmt.Appendf(nil, "HTTP/1.0 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// answerPlainHTTP writes the 400 to the socket beneath TLS, half-closes it
// and asks for a lingering close (netguard's socket offers both), so the
// client reads the answer rather than a reset while it still sends.
func answerPlainHTTP(sock net.Conn) {
	if sock.SetWriteDeadline(time.Now().Add(plainHTTPWrite)) != nil {
		return
	}
	if _, err := sock.Write(plainHTTPAnswer); err != nil {
		return
	}
	if cw, ok := sock.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if l, ok := sock.(interface{ LingerOnClose() }); ok {
		l.LingerOnClose()
	}
}

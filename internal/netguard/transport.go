package netguard

import (
	"net"
	"time"
)

// WrapTransport has every accepted connection wrapped by f in a transport
// layer that rewrites the bytes (crypto/tls's Server): the caps and the
// refusal tier count the accepted TCP connection, and the listener's own
// connection reads (and scans: ScanFraming) what f's connection reads, the
// decrypted bytes. An admitted connection's chain is then the listener's
// own, f's, and the socket; the refusal tier answers through f's connection too, so
// its 503 reaches a TLS client as TLS. Call it before the first Accept;
// without it, Accept does nothing more per connection than a nil test.
//
// f is handed the socket through a shim (transportSocket) that keeps the
// listener's deadlines (deadline.go) in force beneath the transport: the
// socket's deadline may be an earlier one than the connection's, and a
// read or write it cuts goes on under the one last set. Above crypto/tls
// that resume would come too late: a TLS connection whose write (or
// handshake) failed on a deadline is broken for good.
func (l *Listener) WrapTransport(f func(net.Conn) net.Conn) { l.transport = f }

// transportSocket is the socket as a transport layer sees it: reads and
// writes resume as conn's do, and the deadlines the layer sets itself
// (crypto/tls bounds its close_notify) go through conn's bookkeeping.
type transportSocket struct {
	net.Conn // the accepted connection
	gc       *conn
}

func (s *transportSocket) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	for n == 0 && err != nil && s.gc.rd.resume(err, s.Conn) {
		n, err = s.Conn.Read(p)
	}
	return n, err
}

func (s *transportSocket) Write(p []byte) (int, error) { return s.gc.wd.writeAll(s.Conn, s.Conn, p) }

func (s *transportSocket) SetReadDeadline(t time.Time) error  { return s.gc.SetReadDeadline(t) }
func (s *transportSocket) SetWriteDeadline(t time.Time) error { return s.gc.SetWriteDeadline(t) }
func (s *transportSocket) SetDeadline(t time.Time) error      { return s.gc.SetDeadline(t) }

// CloseWrite half-closes the socket: for a transport layer that answers a
// client below its protocol (a plain-HTTP request on a TLS port) and can
// no longer half-close through its own.
func (s *transportSocket) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// LingerOnClose asks for a lingering close of the connection (linger.go),
// for a transport layer that answered a client that may still be sending.
func (s *transportSocket) LingerOnClose() { s.gc.linger.Store(true) }

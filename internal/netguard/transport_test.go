package netguard

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/selfsigned"
)

// A write that meets a socket deadline earlier than the one last set goes
// on (writeDeadline), beneath TLS too: the socket's deadline has passed,
// the connection's is a minute away, and the answer still reaches the
// client. Handing crypto/tls the bare socket, the write fails for good
// (a TLS connection whose write failed is broken), which is what the
// transport's shim is for.
func TestWriteResumesBeneathTransport(t *testing.T) {
	pair := selfsigned.New(t, 1)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair.Certificate(t)}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, ConnLimits{Total: 4}, nil)
	defer l.Close()
	l.WrapTransport(func(c net.Conn) net.Conn { return tls.Server(c, cfg) })

	clientErr := make(chan error, 1)
	got := make(chan string, 1)
	go func() {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{RootCAs: selfsigned.Pool(pair), ServerName: "127.0.0.1"})
		if err != nil {
			clientErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			clientErr <- err
			return
		}
		b := make([]byte, len("answer"))
		if _, err := io.ReadFull(c, b); err != nil {
			clientErr <- err
			return
		}
		got <- string(b)
	}()

	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(sc, make([]byte, len("ping"))); err != nil { // the handshake, then the bytes
		t.Fatal(err)
	}
	sc.SetWriteDeadline(time.Unix(1, 0))             // on the socket: the first one
	sc.SetWriteDeadline(time.Now().Add(time.Minute)) // later: the socket keeps the one that passed
	if _, err := sc.Write([]byte("answer")); err != nil {
		t.Fatalf("write under a live deadline failed beneath TLS: %v", err)
	}
	select {
	case s := <-got:
		if s != "answer" {
			t.Fatalf("client read %q", s)
		}
	case err := <-clientErr:
		t.Fatal(err)
	}
}

package netguard

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/selfsigned"
	"github.com/sluice-gw/sluice/internal/testutil/socktest"
)

// A client whose connection the gateway read fast once (a large body) and
// then stopped reading (its next request pipelined behind a long answer)
// can make the kernel queue only the fixed receive buffer, not what
// autotuning grew it to while it was read (up to net.ipv4.tcp_rmem's
// maximum, kept for the connection's life); one that has sent less than
// fixReceiveAfter keeps the kernel's own, smaller one. The client sends
// 64 MiB that the accepted side reads through the listener's connection,
// then writes without blocking until the kernel takes no more; the bounds
// hold whenever they are read, so nothing here waits on time. Over TLS
// the bytes counted are the decrypted ones, the bound set on the socket.
func TestAcceptedConnectionReceiveBufferBounded(t *testing.T) {
	t.Run("plain", func(t *testing.T) { receiveBufferBounded(t, false) })
	t.Run("TLS", func(t *testing.T) { receiveBufferBounded(t, true) })
}

func receiveBufferBounded(t *testing.T, overTLS bool) {
	bound := socktest.HeldReceiveBuffer(t, MaxReceive)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, ConnLimits{Total: 10}, NewConnMetrics(prometheus.NewRegistry()))
	defer l.Close()
	pair := selfsigned.New(t, 1)
	if overTLS {
		cfg := &tls.Config{Certificates: []tls.Certificate{pair.Certificate(t)}}
		l.WrapTransport(func(c net.Conn) net.Conn { return tls.Server(c, cfg) })
	}
	tcp, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	cc := tcp
	if overTLS {
		cc = tls.Client(tcp, &tls.Config{RootCAs: selfsigned.Pool(pair), ServerName: "127.0.0.1"})
	}
	ac, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	raw := ac.(*conn).raw.(*net.TCPConn)

	const ahead = 64 << 20
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var err error
		for n := 0; n < ahead && err == nil; n += len(buf) {
			_, err = cc.Write(buf)
		}
		wrote <- err
	}()
	if _, err := io.CopyN(io.Discard, ac, fixReceiveAfter-1); err != nil {
		t.Fatal(err)
	}
	if small := socktest.Int(t, raw, socktest.RcvBuf); small == bound {
		t.Fatalf("receive buffer fixed at %d after %d bytes read: want the kernel's own until %d", small, fixReceiveAfter-1, fixReceiveAfter)
	}
	if _, err := io.CopyN(io.Discard, ac, ahead-(fixReceiveAfter-1)); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	after := socktest.Int(t, raw, socktest.RcvBuf)
	if after != bound {
		t.Fatalf("receive buffer %d after a fast read of 64 MiB: want it fixed at %d (twice MaxReceive %d, capped by rmem_max)", after, bound, MaxReceive)
	}

	// The accepted side now reads nothing.
	took := socktest.FillUntilFull(t, tcp.(*net.TCPConn), 256<<20)
	if q := socktest.Int(t, raw, socktest.InQ); q > bound {
		t.Fatalf("the kernel queued %d bytes unread from the client, want at most the receive buffer %d", q, bound)
	} else {
		t.Logf("receive buffer %d, queued %d unread, the client's writes took %d", after, q, took)
	}
}

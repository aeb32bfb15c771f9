package netguard

import (
	"net"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/socktest"
)

// A client that reads nothing can make the kernel hold only about
// MaxUnsent of what the gateway writes to it, not the autotuned send
// buffer (loopback's 64 KiB segments grow it to tcp_wmem's 4 MiB at once).
// The server side writes without blocking until the kernel takes no more:
// what it took is what a stalled client pins.
func TestStalledClientPinsBoundedSendQueue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, ConnLimits{Total: 10}, NewConnMetrics(prometheus.NewRegistry()))
	defer l.Close()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	cc, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close() // never read
	ac, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	took := socktest.FillUntilFull(t, ac.(*conn).raw.(*net.TCPConn), 64<<20)
	// MaxUnsent, the client's small window and one segment of slack.
	if took > 512<<10 {
		t.Fatalf("the kernel took %d bytes for a client that reads nothing, want at most 512 KiB (MaxUnsent %d)", took, MaxUnsent)
	}
	t.Logf("took %d bytes", took)
}

package h1client

import (
	"context"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sluice-gw/sluice/internal/testutil/socktest"
)

// sockInt reads one integer of c's socket: an option (get) or an ioctl.
func sockInt(t *testing.T, c net.Conn, get func(fd int) (int, error)) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = get(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func rcvbuf(fd int) (int, error) { return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF) }
func inq(fd int) (int, error)    { return unix.IoctlGetInt(fd, unix.SIOCINQ) }

// A connection the relay reads fast and then stops reading (its client
// stalled) can make the kernel queue only its fixed receive buffer from
// the backend, not what autotuning grew the buffer to while it was read
// (up to net.ipv4.tcp_rmem's maximum). The backend writes 64 MiB that
// the client side reads, then writes without blocking until the kernel
// takes no more; the bounds hold whenever they are read, so nothing here
// waits on time.
func TestStalledReaderQueuesBoundedReceiveBuffer(t *testing.T) {
	const want = 512 << 10
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := New(Options{ReceiveBuffer: want})
	defer c.Close()
	cc, err := c.dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	bc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()

	before := sockInt(t, cc, rcvbuf)
	const ahead = 64 << 20
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var err error
		for n := 0; n < ahead && err == nil; n += len(buf) {
			_, err = bc.Write(buf)
		}
		wrote <- err
	}()
	if _, err := io.CopyN(io.Discard, cc, ahead); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	after := sockInt(t, cc, rcvbuf)
	if after != before || after > 2*want {
		t.Fatalf("receive buffer %d before a fast read of 64 MiB, %d after: want it fixed at most %d (twice SO_RCVBUF %d)", before, after, 2*want, want)
	}

	// The client side now reads nothing.
	took := socktest.FillUntilFull(t, bc.(*net.TCPConn), 256<<20)
	if q := sockInt(t, cc, inq); q > after {
		t.Fatalf("the client's kernel queued %d bytes unread, want at most its receive buffer %d", q, after)
	} else {
		t.Logf("receive buffer %d, queued %d unread, the backend's writes took %d", after, q, took)
	}
}

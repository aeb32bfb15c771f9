package app

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// smallSendBuffers accepts connections whose kernel send buffer is a few
// KiB, so that an answer of a few hundred KiB fills it, and the client's,
// when the client does not read: the server's next write waits.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// /debug/pprof on the admin listener (admin.pprof: true) cuts a client
// that stops taking its answer, as /metrics, /status/stream and the
// deprecated --pprof listener do (netguard.StallCut): before, a
// goroutine dump or a trace to a client that read nothing held its
// connection, and with it one of admin.max_connections slots (here the
// only one) and its handler goroutine, until the process stopped (and a
// trace held the runtime's tracer: trace.Stop waits for its writer).
// The wait here is the real AdminSendTimeout (a network deadline): the
// 90 s is a hang guard, not a timing assertion.
func TestAdminPprofCutsAClientThatStopsReading(t *testing.T) {
	be := backend(t, "a")
	a := newApp(t, writeAdminConfig(t, be.URL, "{max_connections: 1, pprof: true}"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.AdoptAdmin(smallSendBuffers{ln})
	_, _, stop, done := runApp(t, a)
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Parked goroutines make the dump some hundreds of KiB.
	release := make(chan struct{})
	defer close(release)
	for range 3000 {
		go func() { <-release }()
	}
	addr := ln.Addr().String()
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(stuck, "GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The stuck client holds the only slot until the server cuts it.
	eventuallyWithin(t, "the admin listener's only slot freed by the cut of a client that stopped reading a goroutine dump", 90*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
		code, err := (&rawConn{c: c, br: bufio.NewReader(c)}).get("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		return err == nil && code == 200
	})
}

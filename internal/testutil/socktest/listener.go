package socktest

import "net"

// SmallReceiveBuffer accepts connections with a 64 KiB kernel receive
// buffer, so that a server that stops reading (a backend that takes no
// more of a request body) fills the kernel buffers between it and its
// client with a few MiB at most, and a writer's stall shows within
// seconds. Wrap an httptest server's Listener before Start.
type SmallReceiveBuffer struct{ net.Listener }

// Accept sets each accepted connection's receive buffer (SO_RCVBUF).
func (l SmallReceiveBuffer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
	}
	return c, err
}

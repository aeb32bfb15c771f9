package netguard

import "net"

// MaxReceive is the SO_RCVBUF asked for an accepted connection once it has
// received fixReceiveAfter bytes (Linux; elsewhere nothing), which bounds
// what the kernel queues from a client the gateway is not reading: Linux
// keeps twice it, 1 MiB, for the data and its per-packet overhead, and
// stops autotuning the socket. The gateway reads a request body as fast
// as it arrives, so the queue fills only while nothing reads: a client
// that pipelines its next request, body and all, behind a long answer
// (net/http reads the next request only after this one's handler
// returns). Autotuned, a buffer grows with every large body read fast, up
// to net.ipv4.tcp_rmem's maximum (32 MiB on kernel 6.x; 0.36–7.5 MB on
// loopback after one 2 MB body), and keeps that size for the connection's
// life: kernel memory per connection, outside the process's RSS and every
// gauge (docs/RELIABILITY.md). The same bound as every upstream HTTP/1.1
// connection's (proxy.UpstreamReceiveBuffer); HAProxy's tune.rcvbuf.client
// is the same knob. The cost: a client far away uploads past the first
// fixReceiveAfter bytes at most the window (0.6–0.9 MiB) per round trip,
// 6–9 MB/s at 100 ms.
const MaxReceive = 512 << 10

// fixReceiveAfter is how much a connection receives with the kernel's own
// buffer (tcp_rmem's default, 128 KiB on Linux): too little for autotuning
// to grow the buffer past the bound, and more than most requests (a chat
// request's JSON), whose connections so keep the default's smaller queue
// (128 KiB where the bound would offer 1 MiB at once).
const fixReceiveAfter = 128 << 10

// countReceived adds n bytes read and fixes the receive buffer at
// MaxReceive once fixReceiveAfter have been read.
func (c *conn) countReceived(n int) {
	if c.received += n; c.received >= fixReceiveAfter {
		c.fixReceive()
	}
}

// fixReceive fixes the receive buffer (countReceived). It runs once per
// connection: kept out of line, so countReceived is inlined into every read.
//
//go:noinline
func (c *conn) fixReceive() {
	c.rcvFixed = true
	boundReceive(c.raw)
}

// boundReceive sets MaxReceive on c when it is a TCP connection. The
// window scale was agreed in the handshake for tcp_rmem's maximum; the
// buffer still bounds the window, in coarser steps. An error (a socket
// that refuses the option) leaves it as the kernel made it.
func boundReceive(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		setReceiveBuffer(tc, MaxReceive)
	}
}

package netguard

import "net"

// MaxUnsent bounds the bytes an accepted connection's kernel send queue
// holds that the client has not been sent yet (TCP_NOTSENT_LOWAT, Linux;
// elsewhere nothing). Without it a client that stops reading a large
// answer lets the gateway write until the socket's send buffer is full,
// and Linux autotunes that buffer up to net.ipv4.tcp_wmem's maximum
// (4 MiB by default): kernel memory per connection, outside the process's
// RSS and every gauge, for up to server.send_timeout. With it the send
// queue holds at most this much unsent past what is in flight, and what a
// stalled client leaves unread waits in the gateway's read-ahead
// (server.response_readahead, metered in sluice_readahead_bytes) or at
// the backend, as back-pressure. Bytes in flight are not limited (they are
// bounded by the congestion window and the client's receive window), so a
// fast client far away is not slowed, unlike a fixed SO_SNDBUF (nginx's
// listen ... sndbuf=), which also turns autotuning off. 128 KiB: a write
// is woken when half of it has left, 64 KiB at a time, so a large answer
// to a fast client costs no more wake-ups than net/http's own 4 KiB
// writes already do (measured in docs/RELIABILITY.md).
const MaxUnsent = 128 << 10

// boundUnsent sets MaxUnsent on c when it is a TCP connection; an error
// (a socket that refuses the option) leaves it as the kernel made it.
func boundUnsent(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		setNotSentLowat(tc, MaxUnsent)
	}
}

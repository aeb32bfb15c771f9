package h1client

import "syscall"

// peeker is a connection's non-blocking peek, set up once per connection.
type peeker struct {
	rc   syscall.RawConn
	fn   func(fd uintptr) bool // p.peek as a method value, made once
	live bool
	one  [1]byte
}

func (p *peeker) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), p.one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	p.live = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK // 0 bytes: closed; >0: unasked data
	return true
}

// alive says whether an idle connection can carry a request: the peer has
// not closed it and sent nothing unasked. One non-blocking peek, so a
// backend's idle close is seen before the request is written (net/http's
// read loop sees it the same way, while the connection is idle).
func (cn *conn) alive() bool {
	if cn.br.Buffered() > 0 {
		return false
	}
	p := &cn.peek
	if p.fn == nil {
		sc, ok := cn.nc.(syscall.Conn)
		if !ok {
			return true
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		p.rc, p.fn = rc, p.peek
	}
	p.live = false
	return p.rc.Read(p.fn) == nil && p.live
}

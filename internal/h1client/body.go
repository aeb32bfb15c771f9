package h1client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
)

// errBodyClosed: Read after Close.
var errBodyClosed = errors.New("h1client: read on closed response body")

// body reads one response's body from its connection. Reads return as
// soon as any bytes arrive (an event stream's chunks pass unbuffered).
// The connection goes back to the pool at a clean end of body; an error,
// an early Close or the request's context ending closes it instead.
type body struct {
	cn       *conn
	ctx      context.Context
	stop     func() bool // detaches the context's close hook
	f        framing
	left     int64 // bytes left: of the body (Content-Length) or of the current chunk
	checkEnd bool  // chunked: the CRLF after a chunk's data is due
	err      error // sticky: io.EOF after a clean end
	done     atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done.Load() {
		return 0, errBodyClosed
	}
	var n int
	var err error
	switch {
	case b.f.chunked:
		n, err = b.readChunked(p)
	case b.f.length >= 0:
		n, err = b.readFixed(p)
	default: // until the connection closes
		n, err = b.cn.br.Read(p)
	}
	if err != nil {
		b.end(err)
	} else {
		b.cn.br.shrink()
	}
	return n, b.err
}

// end settles the connection once the body has ended or failed.
func (b *body) end(err error) {
	if !b.done.CompareAndSwap(false, true) {
		b.err = errBodyClosed
		return
	}
	if err == io.EOF {
		b.err = io.EOF
		b.cn.release(b.stop, !b.f.close)
		return
	}
	b.stop()
	b.cn.close()
	if b.ctx.Err() != nil {
		err = context.Cause(b.ctx) // as net/http
	} else if err == errBodyClosed {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
}

// Close before the end closes the connection (unread bytes make it
// unusable); after the end it does nothing. Safe to call while a Read is
// blocked: the Read then fails.
func (b *body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.stop()
		b.cn.close()
	}
	return nil
}

func (b *body) readFixed(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.cn.br.Read(p)
	b.left -= int64(n)
	switch {
	case b.left == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// readChunked decodes chunked coding; like net/http's reader it returns
// what it has rather than block on the next chunk's header.
func (b *body) readChunked(p []byte) (n int, err error) {
	br := &b.cn.br
	for n < len(p) {
		if b.checkEnd {
			if n > 0 && br.Buffered() < 2 {
				return n, nil
			}
			if err := expectCRLF(b); err != nil {
				return n, err
			}
			b.checkEnd = false
		}
		if b.left == 0 {
			if n > 0 && !lineBuffered(b) {
				return n, nil
			}
			size, err := b.chunkHeader()
			if err != nil {
				return n, err
			}
			if size == 0 {
				return n, b.trailer()
			}
			b.left = size
		}
		m, err := br.Read(p[n:min(int64(len(p)), int64(n)+b.left)])
		n += m
		b.left -= int64(m)
		if err == io.EOF {
			return n, io.ErrUnexpectedEOF
		}
		if err != nil {
			return n, err
		}
		if b.left == 0 {
			b.checkEnd = true
		}
	}
	return n, nil
}

// expectCRLF checks the two bytes in the buffer, where io.ReadFull into
// a local array cost an allocation per chunk (the array escaped through
// the connection's io.Reader): one per event of a streamed answer.
func expectCRLF(b *body) error {
	br := &b.cn.br
	for br.Buffered() < 2 {
		if br.err != nil {
			return unexpected(br.readErr())
		}
		br.fill()
	}
	if br.buf[br.r] != '\r' || br.buf[br.r+1] != '\n' {
		return malformed("chunk not ended by CRLF")
	}
	br.r += 2
	return nil
}

// lineBuffered: a whole line (the next chunk's header) is already read.
func lineBuffered(b *body) bool {
	return b.cn.br.hasLine()
}

// chunkHeader reads "hex-size [;ext] CRLF".
func (b *body) chunkHeader() (int64, error) {
	line, err := readLine(&b.cn.br)
	if err != nil {
		return 0, unexpected(err)
	}
	return parseChunkSize(line)
}

func parseChunkSize(line []byte) (int64, error) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		if !validValue(line[i:]) {
			return 0, malformed("chunk extension")
		}
		line = bytes.TrimRight(line[:i], " \t")
	}
	if len(line) == 0 || len(line) > 15 { // 15 hex digits: under 2^60
		return 0, malformed("chunk size")
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, malformed("chunk size")
		}
		n = n<<4 | int64(c)
	}
	return n, nil
}

// trailer reads (and drops) the trailer section after the last chunk,
// under the header limits; then the body has ended cleanly.
func (b *body) trailer() error {
	total := 0
	for i := 0; ; i++ {
		line, err := readLine(&b.cn.br)
		if err != nil {
			return unexpected(err)
		}
		if len(line) == 0 {
			return io.EOF
		}
		if total += len(line); i == maxHeaderFields || total > maxHeaderBytes {
			return malformed("trailer too large")
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

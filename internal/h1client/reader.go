package h1client

import (
	"bytes"
	"io"
	"sync"
)

// smallReadBuffer is the read buffer a connection starts with. A held
// event stream reads one small chunk at a time and never needs more; with
// thousands of streams open the 32 KiB that were allocated per connection
// were most of a stream's heap (docs/RELIABILITY.md, "Memory per held
// stream").
const smallReadBuffer = 4 << 10

// tinyReadBuffer is what a connection waits on once a body read has
// returned with at most this much still buffered (shrink): the reads keep
// pace with the backend, as a held event stream's do, a token's event
// (~250 bytes) at a time. The 4 KiB small buffer goes back to the
// client's pool meanwhile (a response's head and a whole small answer
// are still read with it, in one read), and is taken again when the
// connection goes idle: 3 KiB less for each held stream.
const tinyReadBuffer = 1 << 10

// maxEmptyReads: a reader returning 0 bytes and no error this many times
// in a row is broken (bufio's rule).
const maxEmptyReads = 100

// reader buffers a connection's reads, as bufio.Reader does, with a buffer
// that starts small and grows to max: when a read fills it (the backend is
// ahead of us: large reads keep the syscalls per byte as before) and when
// a line does not fit it (a header line up to max is accepted, as it was
// with a max-sized buffer). A body read that leaves at most the small
// buffer's worth buffered (shrink), and a connection that goes back to the
// pool (release), drop a grown buffer into its client's pool.
type reader struct {
	rd    io.Reader
	buf   []byte
	small []byte // the initial buffer, kept for when buf is given back; nil while lent (tiny)
	// smalls, when set, pools small buffers (*[]byte of smallReadBuffer
	// bytes): one is lent back while the connection waits on tiny.
	smalls *sync.Pool
	smallp *[]byte // small's pool entry
	tiny   []byte  // tinyReadBuffer bytes, made at first use
	r, w   int     // buf[r:w] is buffered
	err    error   // the read error to return once the buffer is drained
	max    int
	grow   bool       // the last read filled the buffer: the next fill grows it
	big    *sync.Pool // *[]byte of len max, shared by the client's connections
	held   *[]byte    // buf's pool entry while it is a big one
	acct   *conn      // counts a big buffer while held (Stats.ReadBufferBytes); nil: none
}

func newReader(rd io.Reader, max int, big, smalls *sync.Pool) reader {
	if max < smallReadBuffer || smalls == nil { // no tiny buffer: it would not be smaller
		small := make([]byte, min(smallReadBuffer, max))
		return reader{rd: rd, buf: small, small: small, max: max, big: big}
	}
	p := smalls.Get().(*[]byte)
	return reader{rd: rd, buf: *p, small: *p, smallp: p, smalls: smalls, max: max, big: big}
}

// getSmall is the small buffer, taken back from the pool if it was lent.
func (b *reader) getSmall() []byte {
	if b.small == nil {
		b.smallp = b.smalls.Get().(*[]byte)
		b.small = *b.smallp
	}
	return b.small
}

// Buffered is how many bytes can be read without reading the connection.
func (b *reader) Buffered() int { return b.w - b.r }

// hasLine: a whole line is buffered.
func (b *reader) hasLine() bool { return bytes.IndexByte(b.buf[b.r:b.w], '\n') >= 0 }

func (b *reader) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// toBig moves the buffered bytes into a buffer of max bytes.
func (b *reader) toBig() {
	p := b.big.Get().(*[]byte)
	b.w = copy(*p, b.buf[b.r:b.w])
	b.r = 0
	b.buf, b.held = *p, p
	if b.acct != nil {
		b.acct.countGrown(int64(len(*p)))
	}
}

// putBig gives the big buffer back to the pool (the caller switches to
// the small one).
func (b *reader) putBig() {
	if b.acct != nil {
		b.acct.countGrown(-int64(len(*b.held)))
	}
	b.big.Put(b.held)
}

// fill reads once into the free end of the buffer, first sliding what is
// buffered to its start (and growing it when the last read filled it).
func (b *reader) fill() {
	if b.grow && len(b.buf) < b.max {
		b.toBig()
	} else if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	b.grow = false
	for range maxEmptyReads {
		n, err := b.rd.Read(b.buf[b.w:])
		if n < 0 {
			panic("h1client: negative read count")
		}
		free := len(b.buf) - b.w
		b.w += n
		if err != nil {
			b.err = err
			return
		}
		if n > 0 {
			b.grow = n == free
			return
		}
	}
	b.err = io.ErrNoProgress
}

// waitByte blocks until a byte is buffered (the response has begun).
func (b *reader) waitByte() error {
	for b.r == b.w {
		if b.err != nil {
			return b.readErr()
		}
		b.fill()
	}
	return nil
}

// Read is bufio.Reader's: buffered bytes first; with none, a read at
// least as large as the buffer goes straight into p.
func (b *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if b.Buffered() > 0 {
			return 0, nil
		}
		return 0, b.readErr()
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		if len(p) >= len(b.buf) {
			n, err := b.rd.Read(p)
			if n < 0 {
				panic("h1client: negative read count")
			}
			return n, err
		}
		b.r, b.w = 0, 0
		b.fill()
		if b.r == b.w {
			return 0, b.readErr()
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// line returns the bytes up to and including the next '\n', valid until
// the next read. A line of more than max bytes is errLineTooLong; a line
// that does not fit the buffer grows it to max first.
func (b *reader) line() ([]byte, error) {
	s := 0 // bytes already searched
	for {
		if i := bytes.IndexByte(b.buf[b.r+s:b.w], '\n'); i >= 0 {
			line := b.buf[b.r : b.r+s+i+1]
			b.r += s + i + 1
			return line, nil
		}
		if b.err != nil {
			line := b.buf[b.r:b.w]
			b.r = b.w
			if len(line) > 0 {
				return line, b.readErr()
			}
			return nil, b.readErr()
		}
		if b.Buffered() >= b.max {
			b.r = b.w
			return nil, errLineTooLong
		}
		if b.Buffered() == len(b.buf) {
			b.toBig() // a line longer than the small buffer
		}
		s = b.Buffered()
		b.fill()
	}
}

// shrink gives a grown buffer back to the pool as a body read returns,
// when what is still buffered fits the small buffer (moved there). The
// reader's caller (the stream relay) goes off to write what it read, and a
// client slower than its backend holds it there for as long as it likes:
// the grown 32 KiB were kept for the stream's life, outside every gauge
// (docs/RELIABILITY.md, "The upstream read buffer given back between
// reads"). grow is kept, so a backend still ahead takes a grown buffer
// from the pool at the next fill: a pool Get and Put per read of up to
// 32 KiB, and a copy of at most 4 KiB.
//
// With at most tinyReadBuffer bytes still buffered, the connection moves
// to its tiny buffer and lends the small one back to the pool too.
func (b *reader) shrink() {
	n := b.w - b.r
	if b.smalls != nil && n <= tinyReadBuffer && len(b.buf) > tinyReadBuffer {
		if b.tiny == nil {
			b.tiny = make([]byte, tinyReadBuffer)
		}
		b.w = copy(b.tiny, b.buf[b.r:b.w])
		b.r = 0
		if b.held != nil {
			b.putBig()
		}
		if b.small != nil {
			b.smalls.Put(b.smallp)
			b.small, b.smallp = nil, nil
		}
		b.buf, b.held = b.tiny, nil
		return
	}
	if b.held == nil || n > min(smallReadBuffer, b.max) {
		return
	}
	small := b.getSmall()
	b.w = copy(small, b.buf[b.r:b.w])
	b.r = 0
	b.putBig()
	b.buf, b.held = small, nil
}

// release gives a grown buffer back to the pool once nothing is buffered
// (a connection going idle), and takes the small one back from it.
func (b *reader) release() {
	if b.held == nil && b.small != nil || b.r != b.w {
		return
	}
	if b.held != nil {
		b.putBig()
	}
	b.buf, b.held, b.r, b.w, b.grow = b.getSmall(), nil, 0, 0, false
}

package gateway

// flightBuf holds a coalescing flight's answer in fixed-size blocks so its
// front can be dropped once every reader is past it, while readers still
// write slices of it to their clients outside the flight's lock: bytes
// handed out are never modified, their block is only dropped (and
// collected when the last slice of it is written).
type flightBuf struct {
	blocks [][]byte // every block full but the last
	base   int64    // offset in the answer of blocks[0][0]
	end    int64    // offset just past the last byte held
	block  int      // block capacity
}

// held is the number of answer bytes the buffer keeps.
func (b *flightBuf) held() int { return int(b.end - b.base) }

// append copies p to the end.
func (b *flightBuf) append(p []byte) {
	for len(p) > 0 {
		if n := len(b.blocks); n == 0 || len(b.blocks[n-1]) == cap(b.blocks[n-1]) {
			b.blocks = append(b.blocks, make([]byte, 0, b.block))
		}
		last := &b.blocks[len(b.blocks)-1]
		n := min(cap(*last)-len(*last), len(p))
		*last = append(*last, p[:n]...)
		p = p[n:]
		b.end += int64(n)
	}
}

// segment returns the bytes from off to the end of off's block (or of the
// data); base <= off < end.
func (b *flightBuf) segment(off int64) []byte {
	rel := int(off - b.base)
	return b.blocks[rel/b.block][rel%b.block:]
}

// dropBefore drops the blocks wholly before off and returns how many bytes
// were dropped.
func (b *flightBuf) dropBefore(off int64) int {
	dropped := 0
	for len(b.blocks) > 0 && b.base+int64(len(b.blocks[0])) <= off {
		n := len(b.blocks[0])
		b.blocks[0] = nil
		b.blocks = b.blocks[1:]
		b.base += int64(n)
		dropped += n
	}
	if len(b.blocks) == 0 {
		b.blocks = nil
	}
	return dropped
}

// bytes returns a copy of everything held, for a cache fill or conversion
// of an answer that was never trimmed.
func (b *flightBuf) bytes() []byte {
	out := make([]byte, 0, b.held())
	for _, blk := range b.blocks {
		out = append(out, blk...)
	}
	return out
}

// release drops everything and returns how many bytes were held.
func (b *flightBuf) release() int {
	n := b.held()
	b.blocks, b.base = nil, b.end
	return n
}

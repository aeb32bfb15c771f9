package proxy

import "io"

// segmentReader reads a body held as slices, in order, leaving them as
// they are. WriteTo hands each slice to the connection's writer whole.
type segmentReader struct {
	segs [][]byte
	i    int // segs[:i] are read
	off  int // bytes of segs[i] read
}

func (r *segmentReader) Read(p []byte) (int, error) {
	for r.i < len(r.segs) && r.off == len(r.segs[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	if r.i == len(r.segs) {
		return 0, io.EOF
	}
	n := copy(p, r.segs[r.i][r.off:])
	r.off += n
	return n, nil
}

func (r *segmentReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for ; r.i < len(r.segs); r.i, r.off = r.i+1, 0 {
		n, err := w.Write(r.segs[r.i][r.off:])
		total += int64(n)
		r.off += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

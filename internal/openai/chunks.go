package openai

import (
	"bytes"
	"io"
	"sort"
)

// chunkText is a body held as a list of chunks (the gateway reads a large
// body into blocks and never copies them into one buffer), read by
// position in the whole. Only what crosses a chunk's end is copied: a
// line or a part's header block that spans two chunks, and the few bytes
// around a seam when searching.
type chunkText struct {
	chunks [][]byte
	starts []int // starts[i] is where chunks[i] starts; starts[len(chunks)] the length
}

func newChunkText(chunks [][]byte) chunkText {
	t := chunkText{chunks: make([][]byte, 0, len(chunks)), starts: make([]int, 0, len(chunks)+1)}
	n := 0
	for _, c := range chunks {
		if len(c) > 0 {
			t.chunks = append(t.chunks, c)
			t.starts = append(t.starts, n)
			n += len(c)
		}
	}
	t.starts = append(t.starts, n)
	return t
}

func (t *chunkText) len() int { return t.starts[len(t.chunks)] }

// chunk is the index of the chunk holding pos (< len()).
func (t *chunkText) chunk(pos int) int {
	return sort.Search(len(t.chunks), func(i int) bool { return t.starts[i+1] > pos }) // the first chunk ending after pos
}

func (t *chunkText) at(pos int) byte {
	i := t.chunk(pos)
	return t.chunks[i][pos-t.starts[i]]
}

// slice is the bytes [a, b): a sub-slice of one chunk, or a copy when
// they span more.
func (t *chunkText) slice(a, b int) []byte {
	if a >= b {
		return nil
	}
	i := t.chunk(a)
	if b <= t.starts[i+1] {
		return t.chunks[i][a-t.starts[i] : b-t.starts[i]]
	}
	out := make([]byte, 0, b-a)
	for ; a < b; i++ {
		end := min(b, t.starts[i+1])
		out = append(out, t.chunks[i][a-t.starts[i]:end-t.starts[i]]...)
		a = end
	}
	return out
}

// segments is [a, b) as sub-slices of the chunks, appended to dst: no copy.
func (t *chunkText) segments(dst [][]byte, a, b int) [][]byte {
	if a >= b {
		return dst
	}
	for i := t.chunk(a); a < b; i++ {
		end := min(b, t.starts[i+1])
		dst = append(dst, t.chunks[i][a-t.starts[i]:end-t.starts[i]])
		a = end
	}
	return dst
}

func (t *chunkText) hasPrefixAt(pos int, s string) bool {
	return pos+len(s) <= t.len() && string(t.slice(pos, pos+len(s))) == s
}

// indexByte is the position of the first c at or after from, or -1.
func (t *chunkText) indexByte(from int, c byte) int {
	if from >= t.len() {
		return -1
	}
	for i := t.chunk(from); i < len(t.chunks); i++ {
		off := max(from-t.starts[i], 0)
		if j := bytes.IndexByte(t.chunks[i][off:], c); j >= 0 {
			return t.starts[i] + off + j
		}
	}
	return -1
}

// index is the position of the first pat at or after from, or -1: each
// chunk searched alone, then the seam after it (pat's length less one
// byte either side).
func (t *chunkText) index(from int, pat []byte) int {
	if from >= t.len() || len(pat) == 0 {
		return -1
	}
	for i := t.chunk(from); i < len(t.chunks); i++ {
		off := max(from-t.starts[i], 0)
		if j := bytes.Index(t.chunks[i][off:], pat); j >= 0 {
			return t.starts[i] + off + j
		}
		end := t.starts[i+1]
		if end == t.len() {
			break
		}
		a := max(from, end-len(pat)+1, t.starts[i])
		seam := t.slice(a, min(t.len(), end+len(pat)-1))
		if j := bytes.Index(seam, pat); j >= 0 && a+j < end {
			return a + j
		}
	}
	return -1
}

// ChunksLen is the bytes in chunks.
func ChunksLen(chunks [][]byte) int {
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	return n
}

// JoinChunks is chunks in one new buffer of exactly their length.
func JoinChunks(chunks [][]byte) []byte {
	out := make([]byte, 0, ChunksLen(chunks))
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

// ChunkReader reads a body held as chunks (Body.Chunks, a spliced
// rewrite), in order, leaving them as they are; WriteTo hands each chunk
// to the writer whole. The zero value reads nothing; Reset points it at
// chunks (the forwarder keeps one inside its per-request allocation).
type ChunkReader struct {
	chunks [][]byte
	i, off int // the next byte: chunks[i][off]
}

// NewChunkReader reads chunks.
func NewChunkReader(chunks [][]byte) *ChunkReader { return &ChunkReader{chunks: chunks} }

// Reset makes r read chunks from the start.
func (r *ChunkReader) Reset(chunks [][]byte) { *r = ChunkReader{chunks: chunks} }

func (r *ChunkReader) Read(p []byte) (int, error) {
	for r.i < len(r.chunks) && r.off == len(r.chunks[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	if r.i == len(r.chunks) {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[r.i][r.off:])
	r.off += n
	return n, nil
}

// WriteTo writes what is left, chunk by chunk.
func (r *ChunkReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for ; r.i < len(r.chunks); r.i, r.off = r.i+1, 0 {
		n, err := w.Write(r.chunks[r.i][r.off:])
		total += int64(n)
		r.off += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

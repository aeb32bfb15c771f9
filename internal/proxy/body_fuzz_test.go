package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// chunkReader hands out data in chunks of varying size, as a
// network does.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[c.i%len(c.sizes)])*97+1) // never 0 with nil: io.Reader discourages it
		c.i++
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// FuzzReadBody: whatever the body, its announced length and its chunking,
// ReadBody returns exactly the bytes within the limit (else
// ErrBodyTooLarge), never holds much more than it received, and gives its
// whole reservation back.
func FuzzReadBody(f *testing.F) {
	f.Add([]byte(`{"model":"m"}`), int64(13), int64(1<<20), []byte{1, 0, 3})
	f.Add([]byte(`{"model":"m"}`), int64(-1), int64(5), []byte{})
	f.Add(bytes.Repeat([]byte("a"), 9000), int64(100), int64(1<<20), []byte{200})
	f.Add(bytes.Repeat([]byte("b"), 5000), int64(5000), int64(5000), []byte{7, 0, 0, 255})
	f.Fuzz(func(t *testing.T, data []byte, cl, limit int64, sizes []byte) {
		if limit < 1 || limit > 1<<22 || cl < -1 {
			return
		}
		budget := netguard.NewBudget(1 << 30)
		p := NewBodyPool(budget)
		b, err := p.ReadBody(&chunkReader{data: data, sizes: sizes}, cl, limit)
		switch {
		case cl > limit || int64(len(data)) > limit:
			if !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("len %d cl %d limit %d: err %v, want ErrBodyTooLarge", len(data), cl, limit, err)
			}
		case err != nil:
			t.Fatalf("len %d cl %d limit %d: %v", len(data), cl, limit, err)
		default:
			if !bytes.Equal(b.Bytes(), data) {
				t.Fatalf("body differs: got %d bytes, want %d", len(b.Bytes()), len(data))
			}
			if c := cap(b.Bytes()); c > max(minBodyBuf, 2*len(data)) {
				t.Fatalf("cap %d for %d bytes", c, len(data))
			}
			if budget.Held() != int64(cap(b.Bytes())) {
				t.Fatalf("budget %d, buffer %d", budget.Held(), cap(b.Bytes()))
			}
			b.Release()
		}
		if h := budget.Held(); h != 0 {
			t.Fatalf("budget holds %d after the body is gone", h)
		}
	})
}

package gateway

import (
	"bytes"
	"testing"
)

// FuzzFlightBuf drives the buffer with appends of the fuzzer's sizes and
// drops up to a moving reader, and checks every segment against the bytes
// written and the held count against what was not dropped.
func FuzzFlightBuf(f *testing.F) {
	f.Add(uint8(7), []byte{1, 200, 3, 255, 0, 17, 64})
	f.Add(uint8(1), []byte{16, 16, 16})
	f.Fuzz(func(t *testing.T, block uint8, ops []byte) {
		b := flightBuf{block: int(block)%32 + 1}
		var all []byte
		var reader int64
		for i, op := range ops {
			p := bytes.Repeat([]byte{byte(i)}, int(op)%50)
			b.append(p)
			all = append(all, p...)
			if b.end != int64(len(all)) {
				t.Fatalf("end %d, wrote %d", b.end, len(all))
			}
			// The reader reads one segment, then the buffer drops what it passed.
			if reader < b.end {
				seg := b.segment(reader)
				if len(seg) == 0 || !bytes.Equal(seg, all[reader:reader+int64(len(seg))]) {
					t.Fatalf("segment at %d: %v", reader, seg)
				}
				reader += int64(len(seg))
			}
			before := b.held()
			dropped := b.dropBefore(reader)
			if b.held() != before-dropped || b.base > reader || b.held() < 0 {
				t.Fatalf("held %d after dropping %d of %d (base %d, reader %d)", b.held(), dropped, before, b.base, reader)
			}
		}
		if n := b.release(); n < 0 || b.held() != 0 {
			t.Fatalf("release %d, held %d", n, b.held())
		}
	})
}

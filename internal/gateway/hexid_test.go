package gateway

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// hexWord writes what encoding/hex does for the word's little-endian
// bytes, for edge values and random ones.
func TestHexWord(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 15, 16, 0x99, 0xaa, 0xff, 0x0123456789abcdef, 0xfedcba9876543210, ^uint64(0)}
	for range 10000 {
		vals = append(vals, rand.Uint64())
	}
	var le [8]byte
	dst := make([]byte, 16)
	for _, v := range vals {
		binary.LittleEndian.PutUint64(le[:], v)
		hexWord(dst, v)
		if want := hex.EncodeToString(le[:]); string(dst) != want {
			t.Fatalf("hexWord(%#x) = %q, want %q", v, dst, want)
		}
	}
}

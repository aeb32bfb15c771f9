package openai

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
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

// A request id is 32 lowercase hex digits, made the same way whether as a
// string or appended to an answer's bytes, and not the same twice.
func TestRequestIDFormat(t *testing.T) {
	a, b := NewRequestID(), string(AppendRequestID([]byte("X-Request-Id: "))[len("X-Request-Id: "):])
	for _, id := range []string{a, b} {
		if _, err := hex.DecodeString(id); len(id) != RequestIDLen || err != nil || strings.ToLower(id) != id {
			t.Errorf("request id %q: %d hex digits, want %d lowercase", id, len(id), RequestIDLen)
		}
	}
	if a == b {
		t.Errorf("two request ids alike: %q", a)
	}
}

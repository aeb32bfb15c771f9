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

// RequestIDs makes ids of NewRequestID's format, none twice, and an id
// once made stays as it was while the ids after it fill its block and the
// next ones: each is a string of a block nothing writes again.
func TestRequestIDsFromBlocks(t *testing.T) {
	var ids RequestIDs
	made := make([]string, 0, 3*idsPerBlock+1)
	copies := make([]string, 0, cap(made))
	seen := map[string]bool{}
	for range cap(made) {
		id := ids.New()
		if _, err := hex.DecodeString(id); len(id) != RequestIDLen || err != nil || strings.ToLower(id) != id {
			t.Fatalf("request id %q: %d hex digits, want %d lowercase", id, len(id), RequestIDLen)
		}
		if seen[id] {
			t.Fatalf("request id %q made twice", id)
		}
		seen[id] = true
		made = append(made, id)
		copies = append(copies, strings.Clone(id))
	}
	for i := range made {
		if made[i] != copies[i] {
			t.Fatalf("request id %d changed after later ones were made: %q, was %q", i, made[i], copies[i])
		}
	}
}

// A request id from RequestIDs allocates only its block's share: one
// allocation every idsPerBlock ids (AllocsPerRun's whole allocations per
// id: 0), against one each from NewRequestID.
func TestRequestIDsAllocatePerBlock(t *testing.T) {
	var ids RequestIDs
	if got := testing.AllocsPerRun(idsPerBlock*10, func() { ids.New() }); got != 0 {
		t.Errorf("RequestIDs.New: %.0f allocations per id, want 1 every %d ids", got, idsPerBlock)
	}
}

package cache

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// hostileBodies are valid request bodies of many small values: what a
// client can send within max_body_bytes to make the key cost more than
// the body.
func hostileBodies() map[string][]byte {
	head := `{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}],"x":`
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	var unsorted strings.Builder
	unsorted.WriteString(head + "{")
	for i := 100000; i > 0; i-- {
		if i != 100000 {
			unsorted.WriteByte(',')
		}
		unsorted.WriteString(`"k` + strconv.Itoa(i) + `":1`)
	}
	unsorted.WriteString("}}")
	// Each level out of order around a large innermost value: moving
	// bytes at each level would copy the value once per level.
	// The same few keys again and again: the map kept one of each.
	dups := head + "{" + strings.Repeat(`"b":1,"a":2,`, 80000) + `"c":3}}`
	nested := head + strings.Repeat(`{"b":`, 2000) + `"` + strings.Repeat("v", 1<<20) + `"` +
		strings.Repeat(`,"a":1}`, 2000) + "}"
	return map[string][]byte{
		"ints":            []byte(head + "[" + strings.Repeat("1,", 500000) + "1]}"),
		"empty objects":   []byte(head + "[" + strings.Repeat("{},", 300000) + "{}]}"),
		"deep arrays":     []byte(head + "[" + strings.Repeat(deep+",", 100) + deep + "]}"),
		"unsorted keys":   []byte(unsorted.String()),
		"nested reorders": []byte(nested),
		"duplicate keys":  []byte(dups),
	}
}

// TestDigestMemoryFollowsBody: the key of a body of many small values
// allocates about the body's size and a few dozen times, not a Go value
// per JSON value. The tree decode (digestTree) allocated 35 to 66 times
// the body and one object per value for the arrays and nesting below,
// 5 to 29 times and one per member for the wide objects. A wide
// object's members are sorted from a 20-byte record each (the total
// counts every step of that slice's growth).
func TestDigestMemoryFollowsBody(t *testing.T) {
	wide := map[string]bool{"unsorted keys": true, "duplicate keys": true}
	for name, body := range hostileBodies() {
		t.Run(name, func(t *testing.T) {
			if _, _, _, err := digestTree(body); err != nil {
				t.Fatalf("the reference refuses the body: %v", err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, det, err := Digest(body)
			runtime.ReadMemStats(&after)
			if err != nil || !det {
				t.Fatalf("Digest: deterministic %v, err %v", det, err)
			}
			bytesAlloc := after.TotalAlloc - before.TotalAlloc
			objects := after.Mallocs - before.Mallocs
			limit := uint64(2 * len(body))
			if wide[name] {
				limit = uint64(24 * len(body))
			}
			if bytesAlloc > limit || objects > 200 {
				t.Errorf("%d-byte body: %d bytes in %d allocations, want at most %d bytes in 200",
					len(body), bytesAlloc, objects, limit)
			}
		})
	}
}

// TestDigestOfHostileBodiesMatchesTree: the same keys as before for the
// bodies above.
func TestDigestOfHostileBodiesMatchesTree(t *testing.T) {
	for name, body := range hostileBodies() {
		want, wm, wdet, werr := digestTree(body)
		got, gm, gdet, gerr := Digest(body)
		if werr != nil || gerr != nil || want != got || wm != gm || wdet != gdet {
			t.Errorf("%s: tree %x %q %v %v, canonicalizer %x %q %v %v", name, want, wm, wdet, werr, got, gm, gdet, gerr)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	for name, body := range hostileBodies() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := Digest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("chat", func(b *testing.B) {
		body := []byte(`{"model":"m","temperature":0,"messages":[{"role":"system","content":"` +
			strings.Repeat("be brief. ", 200) + `"},{"role":"user","content":"hello"}],"max_tokens":64}`)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := Digest(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

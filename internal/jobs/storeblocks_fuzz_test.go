package jobs

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// blockRecord is one record in nats-server's file-store layout (see
// storeblocks.go): a valid record for the fuzzer's seeds.
func blockRecord(seq uint64, subject string, payload []byte) []byte {
	rl := blockRecordHeader + len(subject) + len(payload) + blockRecordHash
	b := make([]byte, 0, rl)
	b = binary.LittleEndian.AppendUint32(b, uint32(rl))
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint64(b, 1_700_000_000_000_000_000+seq)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(subject)))
	b = append(b, subject...)
	b = append(b, payload...)
	return append(b, make([]byte, blockRecordHash)...)
}

// firstBadRecord reads a block from disk that anything may have written
// (a failing disk, a bad copy). Whatever the bytes: it never panics, a
// bad offset lies inside the block, and the block cut there (what the
// start does with it) has no bad record left.
func FuzzFirstBadRecord(f *testing.F) {
	two := append(blockRecord(1, "$KV.sluice_jobs.j.a", []byte(`{"id":"a"}`)),
		blockRecord(2, "$KV.sluice_jobs.j.b", []byte(`{"id":"b"}`))...)
	f.Add(two)
	f.Add(two[:len(two)-3])
	f.Add([]byte{})
	f.Add(make([]byte, 21))
	garbled := append([]byte(nil), two...)
	copy(garbled[len(garbled)-20:], []byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3})
	f.Add(garbled)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, block []byte) {
		path := filepath.Join(dir, "1.blk")
		if err := os.WriteFile(path, block, 0o600); err != nil {
			t.Fatal(err)
		}
		bad, size, err := firstBadRecord(path)
		if err != nil {
			t.Fatalf("a readable block: %v", err)
		}
		if size != int64(len(block)) {
			t.Fatalf("size %d, want %d", size, len(block))
		}
		if bad == -1 {
			return
		}
		if bad < 0 || bad >= size {
			t.Fatalf("bad offset %d outside the block of %d bytes", bad, size)
		}
		if err := os.Truncate(path, bad); err != nil {
			t.Fatal(err)
		}
		if again, _, err := firstBadRecord(path); err != nil || again != -1 {
			t.Fatalf("the block cut at %d: bad %d, err %v; want none", bad, again, err)
		}
	})
}

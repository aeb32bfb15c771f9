package jobs

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// writeSyntheticBlock writes n records framed as nats-server's file store
// writes them (writeMsgRecord), each with a subject as a job record's and
// a body of body bytes, to path.
func writeSyntheticBlock(tb testing.TB, path string, n, body int) {
	tb.Helper()
	subj := []byte("$KV.sluice_jobs.acme.job_0123456789abcdef0123")
	rl := blockRecordHeader + len(subj) + body + blockRecordHash
	rec := make([]byte, rl)
	binary.LittleEndian.PutUint32(rec[0:], uint32(rl))
	binary.LittleEndian.PutUint16(rec[20:], uint16(len(subj)))
	copy(rec[blockRecordHeader:], subj)
	buf := make([]byte, 0, n*rl)
	for i := range n {
		binary.LittleEndian.PutUint64(rec[4:], uint64(i+1))
		buf = append(buf, rec...)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkFirstBadRecord100k walks 100,000 clean records of ~680 bytes
// (a job record's size) in 10 blocks: the start's check on such a store.
func BenchmarkFirstBadRecord100k(b *testing.B) {
	dir := b.TempDir()
	var blocks []string
	for i := range 10 {
		p := filepath.Join(dir, string(rune('a'+i))+".blk")
		writeSyntheticBlock(b, p, 10_000, 600)
		blocks = append(blocks, p)
	}
	b.ResetTimer()
	for range b.N {
		for _, p := range blocks {
			if bad, _, err := firstBadRecord(p); err != nil || bad != -1 {
				b.Fatalf("%s: bad %d err %v", p, bad, err)
			}
		}
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBlockFilesCountsOnlyJetStreamBlocks(t *testing.T) {
	dir := t.TempDir()
	for name, target := range map[string]string{
		"3": "/data/jetstream/$G/streams/SLUICE_JOBS/msgs/4.blk",
		"4": "/data/jetstream/$G/streams/KV_sluice_jobs/msgs/1.blk",
		"5": "socket:[1234]",
		"6": "/data/jetstream/$G/streams/SLUICE_JOBS/msgs/4.idx",
		"7": "/tmp/gateway.log",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if n := blockFiles(dir); n != 2 {
		t.Fatalf("blockFiles = %d, want 2", n)
	}
	if n := blockFiles(filepath.Join(dir, "gone")); n != -1 {
		t.Fatalf("an unreadable directory: %d, want -1", n)
	}
}

func TestSockstatReadsTheTCPLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sockstat")
	text := "sockets: used 171\nTCP: inuse 137 orphan 0 tw 360 alloc 140 mem 127\nUDP: inuse 0 mem 3\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	mem, inuse, err := sockstat(p)
	if err != nil || mem != 127 || inuse != 137 {
		t.Fatalf("sockstat = mem %d, inuse %d, %v; want 127, 137", mem, inuse, err)
	}
	if _, _, err := sockstat(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Fatal("a missing file read without an error")
	}
}

func TestWriteSamplesOneRowASample(t *testing.T) {
	p := filepath.Join(t.TempDir(), "samples.tsv")
	s := []sample{
		{at: 0, values: map[string]float64{"b": 2, "a": 1}},
		{at: 30 * time.Second, values: map[string]float64{"a": 3}},
	}
	if err := writeSamples(p, s); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if want := "t_s\ta\tb\n0\t1\t2\n30\t3\t0\n"; err != nil || string(got) != want {
		t.Fatalf("samples.tsv = %q, %v; want %q", got, err, want)
	}
}

package cache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The in-process level counts what an entry costs it, not only the
// answer: its key and the level's bookkeeping too. With the answer alone
// counted, 200,000 small answers through the binary held 141 MB of heap
// for 80 MB on sluice_cache_bytes; a level bounded at 1 MiB of tiny
// answers under long keys held several MiB.
func TestMemoryLevelWeighsKeysAndBookkeeping(t *testing.T) {
	m, _ := NewMetrics(nil)
	mem, err := NewMemory(1<<20, m)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	key := "tenant\x00" + strings.Repeat("k", 1000)
	e := &Entry{Status: 200, ContentType: "application/json", Body: []byte(`{}`), Stored: time.Now()}
	if err := mem.Set(context.Background(), key, e, time.Minute); err != nil {
		t.Fatal(err)
	}
	want := e.Size() + len(key) + nodeOverhead
	got := testutil.ToFloat64(m.bytes.WithLabelValues(LevelL1))
	if got != float64(want) || got < 1000+200 {
		t.Fatalf("sluice_cache_bytes %v for one entry under a %d-byte key, want %d (answer %d + key + bookkeeping %d)",
			got, len(key), want, e.Size(), nodeOverhead)
	}
	for i := range 5000 { // tiny answers under 1 KB keys: each weighs > 1 KB
		k := key + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/182)
		_ = mem.Set(context.Background(), k, e, time.Minute)
	}
	mem.c.CleanUp()
	if n := mem.c.EstimatedSize(); n > (1<<20)/1200 {
		t.Fatalf("%d entries of >1,200 bytes each kept under a 1 MiB bound", n)
	}
}

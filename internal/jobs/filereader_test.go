package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"
)

// A batch finalized by two trackers at once gets its output file written
// twice; the second Put purges the first copy's chunks. A download begun
// on the first copy used to stall until nats.go's deadline and end with
// "nats: timeout" (TestBatchFinalizedByAnotherProcess failed so); it
// continues on the second copy now.
func TestFileContentSurvivesRewrite(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.NoTracker = true
	writer, reader := openStore(t, o), openStore(t, o)
	ctx := context.Background()
	// The server runs at most about 4 MiB (a client's 64 MiB max pending
	// over 16) ahead of the reader's flow-control answers: 6 MiB leaves
	// chunks undelivered when the rewrite purges them.
	content := make([]byte, 6<<20)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	f := &File{ID: "file-rewritten", Tenant: "acme", Purpose: "batch_output", Filename: "b_output.jsonl"}
	write := func() {
		t.Helper()
		if _, err := writer.files.Put(ctx, fileMeta(f, "batch_x"), bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	write()
	rc, err := reader.FileContent(ctx, "acme", f.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	write() // as the second finalizing tracker does
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading on after the rewrite: %v", err)
	}
	if got := append(first, rest...); !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(content))
	}
	if fr, ok := rc.(*fileReader); ok && fr.reopens != 1 {
		t.Fatalf("%d reopens, want 1: the rewrite did not cut the first read", fr.reopens)
	}
}

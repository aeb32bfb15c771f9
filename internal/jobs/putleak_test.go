package jobs

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// Every file upload and batch output goes through the object store's Put,
// which publishes on a jetstream context of its own and starts that
// context's reconnect listener (resetPendingAcksOnReconnect). In nats.go
// v1.55.0 the listener read the status channel from the context after it
// started; a Put that finished first (a small file) had already cleared
// it, and the listener waited on a nil channel for the life of the
// process: a 30-min soak (branch soak7) left 13 of them, 500 uploads 2,
// about 4,000 a day at one upload a second. v1.56.0 hands the channel to
// the listener when it starts it, and the Put's cleanup closes it. The
// race is the scheduler's, so on the old library this test fails most
// runs, not every one; the leak checks of internal/jobs and internal/app
// no longer exempt the listener either.
func TestUploadsLeaveNoPublisherGoroutines(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.MaxFileBytes = 1024 })
	ctx := context.Background()
	before := publisherListeners()
	for i := range 400 {
		if _, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"},
			bytes.NewReader([]byte(`{"custom_id":"a"}`+"\n"))); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	// A Put's listener ends when the Put's cleanup closes its channel,
	// which happens before Put returns; it may still be on its way out.
	eventually(t, "the uploads' publisher listeners ending", func() bool { return publisherListeners() <= before })
}

// publisherListeners counts the goroutines in nats.go's per-context
// reconnect listener.
func publisherListeners() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "jetstream.(*jetStream).resetPendingAcksOnReconnect")
}

package proxy

import (
	"bytes"
	"context"
	"net/http/httptrace"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// The poisoning pool (the test hook behind every gateway test): a
// released body's slices read poison, Bytes and Chunks on it panic, Len
// stays its length; a reference still held by an outbound write keeps
// the bytes intact until the write is reported, whatever the owner did.
func TestPoisonedBodyAfterRelease(t *testing.T) {
	for _, size := range []int{90, 5000, 70 << 10} {
		pool := NewBodyPool(netguard.NewBudget(1 << 30))
		pool.PoisonReleased()
		want := strings.Repeat("a", size)
		b, err := pool.ReadBody(strings.NewReader(want), int64(size), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		kept := b.Bytes()
		ctx := b.holdUntilWritten(context.Background()) // an attempt's write in progress
		b.Release()
		if string(kept) != want {
			t.Fatalf("%d bytes: the owner's release changed bytes a write still holds", size)
		}
		if b.Len() != int64(size) {
			t.Fatalf("Len after release %d, want %d", b.Len(), size)
		}
		httptrace.ContextClientTrace(ctx).WroteRequest(httptrace.WroteRequestInfo{})
		if !bytes.Equal(kept, bytes.Repeat([]byte{poisonByte}, size)) {
			t.Fatalf("%d bytes: a slice kept past the last release is not poisoned", size)
		}
		if b.Len() != int64(size) {
			t.Fatalf("Len after the last reference %d, want %d", b.Len(), size)
		}
		for name, read := range map[string]func(){"Bytes": func() { b.Bytes() }, "Chunks": func() { b.Chunks() }} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%d bytes: %s after release did not panic", size, name)
					}
				}()
				read()
			}()
		}
	}
}

// The upstream request's body reader pointed at the body's buffer for as
// long as the request lived, and a streamed response keeps its request
// (http.Response.Request) to the stream's end: a body released early
// stayed reachable through it (1,000 held streams of 64 KiB bodies kept
// 101 KiB each after a collection, 37 once the reader lets go). Once the
// request is written, the reader is emptied.
func TestWrittenRequestLetsGoOfTheBody(t *testing.T) {
	pool := NewBodyPool(netguard.NewBudget(1 << 30))
	b, err := pool.ReadBody(strings.NewReader(strings.Repeat("a", 70<<10)), 70<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	up := &upstream{}
	up.body.Reset(b.Bytes())
	up.segs.Reset(b.Chunks())
	up.hold.readers = up
	ctx := up.hold.hold(context.Background(), b)
	httptrace.ContextClientTrace(ctx).WroteRequest(httptrace.WroteRequestInfo{})
	if up.body.Size() != 0 {
		t.Fatalf("the written request's reader still holds %d bytes of the body", up.body.Size())
	}
	if n, _ := up.segs.Read(make([]byte, 1)); n != 0 {
		t.Fatal("the written request's chunk reader still reads the body")
	}
	b.Release()
}

// A rewritten body's copy is let go only once the head came and the
// reader the transport last took was written whole: before the head a
// transport may take another reader (GetBody, a retry), and after it an
// HTTP/2 writer may still be reading; a failed write keeps it.
func TestRewrittenCopyLetGoAfterHeadAndWrite(t *testing.T) {
	data := []byte(strings.Repeat("a", 1000))
	ok, failed := httptrace.WroteRequestInfo{}, httptrace.WroteRequestInfo{Err: context.Canceled}

	up := &upstream{} // head, then the write
	trace := httptrace.ContextClientTrace(up.copy.hold(context.Background(), up, data))
	up.copy.answered()
	if up.body.Len() != len(data) {
		t.Fatal("the copy was let go before the head's request was written")
	}
	trace.WroteRequest(ok)
	if up.body.Size() != 0 {
		t.Fatal("the copy is kept after the head and the write")
	}

	up = &upstream{} // written, retried (GetBody), the head, the retry's write
	trace = httptrace.ContextClientTrace(up.copy.hold(context.Background(), up, data))
	trace.WroteRequest(ok)
	rc, _ := up.copy.getBody()
	up.copy.answered()
	if n, _ := rc.Read(make([]byte, 2000)); n != len(data) {
		t.Fatalf("the retry's reader read %d bytes before its write was reported, want %d", n, len(data))
	}
	trace.WroteRequest(ok)
	if up.copy.data != nil {
		t.Fatal("the copy is kept after the retry's write and the head")
	}

	up = &upstream{} // a failed write: kept
	trace = httptrace.ContextClientTrace(up.copy.hold(context.Background(), up, data))
	trace.WroteRequest(failed)
	up.copy.answered()
	if up.body.Len() != len(data) {
		t.Fatal("the copy was let go after a failed write")
	}
}

package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptrace"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// chunkedReads hands out data a few KiB a read, as a socket does.
type chunkedReads struct{ data []byte }

func (r *chunkedReads) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 32<<10)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// A body read in chunks (an audio form) stays in its blocks: what the
// budget holds is their capacity, about the bytes received (+1/8), never
// the blocks and an assembled copy (2.1 times the body, the old end of
// ReadBody), and all of it comes back on Release.
func TestBodyChunksChargeCapacityNoCopy(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+1000) // 3 MiB and a bit
	budget := netguard.NewBudget(64 << 20)
	p := NewBodyPool(budget)
	b, err := p.ReadBodyChunks(&chunkedReads{data: want}, int64(len(want)), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	chunks := b.Chunks()
	if len(chunks) < 2 || b.Bytes() != nil || b.Len() != int64(len(want)) {
		t.Fatalf("%d chunks, Bytes %d, Len %d: want the blocks kept, no assembled buffer", len(chunks), len(b.Bytes()), b.Len())
	}
	var joined []byte
	var capacity int64
	for _, c := range chunks {
		joined = append(joined, c...)
		capacity += int64(cap(c))
	}
	if !bytes.Equal(joined, want) {
		t.Fatal("the chunks are not the body")
	}
	if budget.Held() != capacity {
		t.Fatalf("budget holds %d, the blocks' capacity is %d", budget.Held(), capacity)
	}
	if most := int64(len(want)) + int64(len(want))/8 + minBodyBuf; capacity > most {
		t.Fatalf("a %d-byte body holds %d bytes, want at most %d", len(want), capacity, most)
	}
	ctx := b.holdUntilWritten(context.Background())
	b.Release()
	if budget.Held() != 0 {
		t.Fatalf("budget holds %d after the owner released", budget.Held())
	}
	if b.Chunks()[0] == nil {
		t.Fatal("the blocks were given back while the transport may still read them")
	}
	httptrace.ContextClientTrace(ctx).WroteRequest(httptrace.WroteRequestInfo{})
	if b.refs.Load() != 0 || b.blocks != nil {
		t.Fatal("blocks not given back after the write")
	}
}

// A chunked body past the budget is refused with ErrBodyMemory, what it
// had reserved given back; one that fits in what is left is read. The
// same bound refused this body when read whole: its end held the blocks
// and the copy.
func TestBodyChunksRefusedPastBudget(t *testing.T) {
	body := bytes.Repeat([]byte("a"), 4<<20)
	budget := netguard.NewBudget(4<<20 + 4<<20/8)
	p := NewBodyPool(budget)
	if _, err := p.ReadBody(&chunkedReads{data: body}, int64(len(body)), 8<<20); !errors.Is(err, ErrBodyMemory) {
		t.Fatalf("read whole: err = %v, want ErrBodyMemory (blocks and a copy)", err)
	}
	b, err := p.ReadBodyChunks(&chunkedReads{data: body}, int64(len(body)), 8<<20)
	if err != nil {
		t.Fatalf("read in chunks, within 1/8 over the body: %v", err)
	}
	if _, err := p.ReadBodyChunks(&chunkedReads{data: body}, int64(len(body)), 8<<20); !errors.Is(err, ErrBodyMemory) {
		t.Fatalf("a second body: err = %v, want ErrBodyMemory", err)
	}
	if held := budget.Held(); held != b.capacity() {
		t.Fatalf("the refused body left %d bytes reserved", held-b.capacity())
	}
	b.Release()
	if budget.Held() != 0 {
		t.Fatalf("held %d after every body was released", budget.Held())
	}
}

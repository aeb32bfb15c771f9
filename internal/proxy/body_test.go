package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptrace"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// stallAfter yields data, then blocks on its gate: a client that announced
// more than it sends.
type stallAfter struct {
	data []byte
	gate chan struct{}
}

func (s *stallAfter) Read(p []byte) (int, error) {
	if len(s.data) > 0 {
		n := copy(p, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	<-s.gate
	return 0, io.ErrUnexpectedEOF
}

// A body announcing 8 MiB that stalls after a few bytes holds about what
// arrived: blocks of an eighth of it, never a doubled buffer.
func TestBodyMemoryFollowsBytesReceivedNotContentLength(t *testing.T) {
	for _, tc := range []struct{ sent, most int64 }{
		{1000, 4 << 10},
		{16<<10 + 58, 20 << 10}, // the chaos suite's stalled upload
		{64<<10 + 58, 72 << 10},
	} {
		budget := netguard.NewBudget(64 << 20)
		p := NewBodyPool(budget)
		r := &stallAfter{data: bytes.Repeat([]byte("x"), int(tc.sent)), gate: make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			_, err := p.ReadBody(r, 8<<20, 8<<20)
			done <- err
		}()
		// The reader is parked in its stall once the bytes are in; the
		// budget shows what the body holds meanwhile.
		for budget.Held() < tc.sent {
			select {
			case err := <-done:
				t.Fatalf("ReadBody returned early: %v", err)
			default:
				runtime.Gosched()
			}
		}
		if h := budget.Held(); h > tc.most {
			t.Errorf("a stalled body announcing 8 MiB after %d bytes holds %d bytes, want at most %d", tc.sent, h, tc.most)
		}
		close(r.gate)
		if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v", err)
		}
		if h := budget.Held(); h != 0 {
			t.Fatalf("a failed read still holds %d bytes of budget", h)
		}
	}
}

func TestBodyGrowsToExactLengthAndReleasesBudget(t *testing.T) {
	budget := netguard.NewBudget(64 << 20)
	p := NewBodyPool(budget)
	want := bytes.Repeat([]byte("0123456789"), 300_001) // ~3 MiB: past the pooled sizes
	b, err := p.ReadBody(iotest.OneByteReader(bytes.NewReader(want[:5000])), -1, 8<<20)
	if err != nil || !bytes.Equal(b.Bytes(), want[:5000]) {
		t.Fatalf("small body: %v", err)
	}
	b.Release()
	b, err = p.ReadBody(bytes.NewReader(want), int64(len(want)), 8<<20)
	if err != nil || !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("large body: %v", err)
	}
	if c := cap(b.Bytes()); c != len(want) {
		t.Fatalf("cap %d for a %d-byte body: the last step overshot the announced length", c, len(want))
	}
	if budget.Held() != int64(cap(b.Bytes())) {
		t.Fatalf("budget holds %d, the body %d", budget.Held(), cap(b.Bytes()))
	}
	ctx := b.holdUntilWritten(context.Background())
	b.Release() // the handler is done; the transport may still be writing
	if budget.Held() != 0 {
		t.Fatalf("budget still holds %d after the owner released (a write that never completes would pin it)", budget.Held())
	}
	httptrace.ContextClientTrace(ctx).WroteRequest(httptrace.WroteRequestInfo{})
	if b.refs.Load() != 0 {
		t.Fatal("buffer not returned after the write")
	}
}

func TestBodyRefusedPastBudget(t *testing.T) {
	budget := netguard.NewBudget(16 << 10)
	p := NewBodyPool(budget)
	held, err := p.ReadBody(strings.NewReader(strings.Repeat("a", 6000)), -1, 1<<20) // 8 KiB buffer
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReadBody(strings.NewReader(strings.Repeat("b", 9000)), -1, 1<<20); !errors.Is(err, ErrBodyMemory) {
		t.Fatalf("err = %v, want ErrBodyMemory (needs 16 KiB, 8 KiB left)", err)
	}

	if budget.Held() != 8<<10 {
		t.Fatalf("refused body left %d bytes reserved", budget.Held()-8<<10)
	}
	b, err := p.ReadBody(strings.NewReader("small"), 5, 1<<20)
	if err != nil {
		t.Fatalf("a small body fits in what is left: %v", err)
	}
	b.Release()
	held.Release()
	if budget.Held() != 0 {
		t.Fatalf("held %d after every body was released", budget.Held())
	}
}

func TestBodyEndsAtLengthOrLimit(t *testing.T) {
	p := NewBodyPool(netguard.NewBudget(1 << 30))
	for _, tc := range []struct {
		name          string
		size, cl, lim int64
		tooLarge      bool
	}{
		{"exactly the limit, announced", 3 << 20, 3 << 20, 3 << 20, false},
		{"exactly the limit, unannounced", 3 << 20, -1, 3 << 20, false},
		{"one past the limit, unannounced", 3<<20 + 1, -1, 3 << 20, true},
		{"more than announced (not net/http)", 5000, 4096, 1 << 20, false},
		{"limit below the smallest buffer", 100, -1, 100, false},
		{"past a small limit", 101, -1, 100, true},
	} {
		want := bytes.Repeat([]byte("z"), int(tc.size))
		b, err := p.ReadBody(bytes.NewReader(want), tc.cl, tc.lim)
		if tc.tooLarge {
			if !errors.Is(err, ErrBodyTooLarge) {
				t.Errorf("%s: err = %v, want ErrBodyTooLarge", tc.name, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s: err = %v, %d bytes", tc.name, err, len(b.Bytes()))
			continue
		}
		b.Release()
	}
	if h := p.budget.Held(); h != 0 {
		t.Fatalf("budget holds %d after every body was released", h)
	}
}

// A body announced under 4 KiB holds the smallest pooled block that fits
// it (128 bytes for a 90-byte chat request, held as long as its stream),
// not 4 KiB; an unannounced one starts at 4 KiB as before; one sending
// more than it announced is read whole. Its blocks go back to their own
// pool: a later 4 KiB body does not get a 128-byte block.
func TestSmallBodyHoldsItsOwnSize(t *testing.T) {
	for _, tc := range []struct {
		sent, announced, held int
	}{
		{1, 1, 128},
		{90, 90, 128},
		{128, 128, 128},
		{129, 129, 256},
		{4095, 4095, 4096},
		{4096, 4096, 4096},
		{90, -1, 4 << 10},
		{9000, 100, 16 << 10}, // 128 + 4 KiB + 4 KiB + 4 KiB blocks, assembled
	} {
		budget := netguard.NewBudget(64 << 20)
		p := NewBodyPool(budget)
		data := bytes.Repeat([]byte("x"), tc.sent)
		for round := range 2 { // the second takes a pooled block
			b, err := p.ReadBody(iotest.HalfReader(bytes.NewReader(data)), int64(tc.announced), 1<<20)
			if err != nil {
				t.Fatalf("%+v: %v", tc, err)
			}
			if !bytes.Equal(b.Bytes(), data) {
				t.Fatalf("%+v round %d: body differs", tc, round)
			}
			if h := budget.Held(); h != int64(tc.held) || cap(b.Bytes()) != tc.held {
				t.Errorf("%+v round %d: holds %d (cap %d), want %d", tc, round, h, cap(b.Bytes()), tc.held)
			}
			b.Release()
		}
		big, err := p.ReadBody(bytes.NewReader(bytes.Repeat([]byte("y"), 4096)), 4096, 1<<20)
		if err != nil || cap(big.Bytes()) != 4096 || len(big.Bytes()) != 4096 {
			t.Fatalf("%+v: a 4 KiB body after: cap %d len %d err %v", tc, cap(big.Bytes()), len(big.Bytes()), err)
		}
		big.Release()
	}
}

package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

func TestBudgetBoundsRetriesToRatio(t *testing.T) {
	b := NewBudget(0.2, 0)
	now := time.Unix(0, 0)
	retries := 0
	for i := 0; i < 1000; i++ {
		b.Deposit()
		for b.Withdraw(now) { // a client that retries as much as it may
			retries++
		}
	}
	if retries < 190 || retries > 210 {
		t.Fatalf("%d retries for 1000 requests, want about 20%%", retries)
	}
}

func TestBudgetMinPerSecond(t *testing.T) {
	b := NewBudget(0, 2)
	now := time.Unix(0, 0)
	n := 0
	for i := 0; i < 10; i++ {
		now = now.Add(time.Second)
		for b.Withdraw(now) {
			n++
		}
	}
	if n < 18 || n > 22 {
		t.Fatalf("%d retries in 10s at 2/s floor", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if d := ParseRetryAfter("3", now); d != 3*time.Second {
		t.Fatal(d)
	}
	if d := ParseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now); d != 5*time.Second {
		t.Fatal(d)
	}
	if d := ParseRetryAfter("soon", now); d != 0 {
		t.Fatal(d)
	}
}

func TestBodyLimitAndRefcount(t *testing.T) {
	p := NewBodyPool(nil)
	if _, err := p.ReadBody(strings.NewReader("0123456789"), -1, 5); err != ErrBodyTooLarge {
		t.Fatalf("err = %v, want ErrBodyTooLarge (unknown length)", err)
	}
	if _, err := p.ReadBody(strings.NewReader(""), 100, 5); err != ErrBodyTooLarge {
		t.Fatalf("err = %v, want ErrBodyTooLarge (declared length)", err)
	}
	b, err := p.ReadBody(strings.NewReader("hello"), 5, 5)
	if err != nil {
		t.Fatal(err)
	}
	ctx := b.holdUntilWritten(context.Background())
	b.Release() // the handler is done, the transport is not
	if b.refs.Load() != 1 {
		t.Fatalf("refs = %d while the transport may still read", b.refs.Load())
	}
	trace := httptrace.ContextClientTrace(ctx)
	trace.WroteRequest(httptrace.WroteRequestInfo{Err: io.ErrUnexpectedEOF})
	if b.refs.Load() != 1 {
		t.Fatal("a failed write released the buffer (the transport may retry reading it)")
	}
	trace.WroteRequest(httptrace.WroteRequestInfo{})
	trace.WroteRequest(httptrace.WroteRequestInfo{}) // reported twice: released once
	if b.refs.Load() != 0 {
		t.Fatalf("refs = %d after the write completed", b.refs.Load())
	}
}

func TestTailKeepsEnd(t *testing.T) {
	var tl tail
	for i := 0; i < 3000; i++ {
		tl.write([]byte("abc"))
	}
	tl.write([]byte("END"))
	if len(tl.buf) != tailSize || !bytes.HasSuffix(tl.buf, []byte("abcEND")) {
		t.Fatalf("tail len %d", len(tl.buf))
	}
}

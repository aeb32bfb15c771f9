package proxy

import (
	"bytes"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

// usageFromBoth writes data in pieces of the sizes given (cycled) to the
// window every relay kept before (tail) and to a usageTail, and returns
// what FindUsage and FindEndpointUsage read from each.
func usageFromBoth(data []byte, sizes []int) (window, kept [2]openai.Usage, windowOK, keptOK [2]bool, held int) {
	var tl tail
	var ut usageTail
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), max(sizes[i%len(sizes)], 1))
		tl.write(data[:n])
		ut.write(data[:n])
		data = data[n:]
	}
	window[0], windowOK[0] = openai.FindUsage(tl.buf)
	kept[0], keptOK[0] = openai.FindUsage(ut.buf)
	window[1], windowOK[1] = openai.FindEndpointUsage(tl.buf)
	kept[1], keptOK[1] = openai.FindEndpointUsage(ut.buf)
	return window, kept, windowOK, keptOK, len(ut.buf)
}

// A relayed stream's usage is found in what the usageTail keeps exactly
// as in the last 4 KiB the relay used to keep, however the stream is cut
// into writes: keys cut across writes, a usage followed by more than the
// window, usage null after a usage, keys inside content.
func FuzzUsageTailMatchesWindow(f *testing.F) {
	ev := func(s string) string { return "data: " + s + "\n\n" }
	chunk := ev(`{"choices":[{"delta":{"content":"tok"}}],"usage":null}`)
	final := ev(`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}`)
	for _, seed := range []struct {
		s    string
		size int
	}{
		{chunk + final + ev("[DONE]"), 1},
		{chunk + final + ev("[DONE]"), 7},
		{final + string(bytes.Repeat([]byte(chunk), 80)) + ev("[DONE]"), 300},
		{final + string(bytes.Repeat([]byte(ev(`{"a":1}`)), 500)), 4096},
		{final + chunk, 50},
		{ev(`{"choices":[{"delta":{"content":"\"usage\":{\"prompt_tokens\":5}"}}]}`), 3},
		{ev("[DONE]") + `"usa` + `ge":{"input_tokens":3,"output_tokens":4}}`, 4},
		{`"usage":{"prompt_tokens":1,"completion_tokens":2}` + string(bytes.Repeat([]byte("x"), 4096-50)), 1000},
		{`"usage":{"prompt_tokens":1,"completion_tokens":2}` + string(bytes.Repeat([]byte("x"), 4096-49)), 1000},
	} {
		f.Add([]byte(seed.s), seed.size, seed.size*3+1)
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b int) {
		sizes := []int{a % 9000, b % 300}
		if sizes[0] < 0 || sizes[1] < 0 {
			return
		}
		window, kept, windowOK, keptOK, held := usageFromBoth(data, sizes)
		if window != kept || windowOK != keptOK {
			t.Fatalf("usage from the window %v %v, from the usage tail %v %v", window, windowOK, kept, keptOK)
		}
		if held > tailSize {
			t.Fatalf("the usage tail holds %d bytes, over the window's %d", held, tailSize)
		}
	})
}

// A stream whose events carry no usage key keeps no bytes for usage,
// however long it runs; one whose events all carry "usage":null keeps its
// last event's key on.
func TestUsageTailHoldsOnlyFromTheKey(t *testing.T) {
	var ut usageTail
	ev := []byte(`data: {"choices":[{"delta":{"content":"tok"}}]}` + "\n\n")
	for range 10_000 {
		ut.write(ev)
	}
	if len(ut.buf) != 0 || cap(ut.buf) != 0 {
		t.Errorf("a stream without usage keeps %d bytes (cap %d) for it, want none", len(ut.buf), cap(ut.buf))
	}
	withNull := []byte(`data: {"choices":[{"delta":{"content":"tok"}}],"usage":null}` + "\n\n")
	for range 10_000 {
		ut.write(withNull)
	}
	if want := `"usage":null}` + "\n\n"; string(ut.buf) != want {
		t.Errorf("kept %q, want %q", ut.buf, want)
	}
}

// Every split of the fuzz seeds' streams into writes of 1 to 64 bytes.
func TestUsageTailMatchesWindowEverySplit(t *testing.T) {
	ev := func(s string) string { return "data: " + s + "\n\n" }
	final := ev(`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}}`)
	for _, s := range []string{
		ev(`{"usage":null}`) + final + ev("[DONE]"),
		final + ev(`{"usage":null}`),
		final + string(bytes.Repeat([]byte(ev(`{"a":1}`)), 300)),
		ev("[DONE]") + `"usage":{"input_tokens":3,"output_tokens":4}}`,
	} {
		for a := 1; a <= 64; a++ {
			window, kept, windowOK, keptOK, _ := usageFromBoth([]byte(s), []int{a, a/2 + 1})
			if window != kept || windowOK != keptOK {
				t.Fatalf("writes of %d: usage from the window %v %v, from the usage tail %v %v", a, window, windowOK, kept, keptOK)
			}
		}
	}
}

// The per-stream work of keeping usage: a stream of bench/stream-overhead.sh's
// shape (64 token events, the finish event with usage, [DONE]) written
// event by event to the window relays kept (tail) and to the usageTail.
func BenchmarkStreamUsageKeeping(b *testing.B) {
	ev := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}` + "\n\n")
	final := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":64,"total_tokens":67}}` + "\n\n")
	done := []byte("data: [DONE]\n\n")
	b.Run("window", func(b *testing.B) {
		tl := tail{buf: make([]byte, 0, tailSize)}
		for b.Loop() {
			tl.buf = tl.buf[:0]
			for range 64 {
				tl.write(ev)
			}
			tl.write(final)
			tl.write(done)
			if _, ok := openai.FindUsage(tl.buf); !ok {
				b.Fatal("no usage")
			}
		}
	})
	b.Run("usageTail", func(b *testing.B) {
		var ut usageTail
		for b.Loop() {
			ut.reset()
			for range 64 {
				ut.write(ev)
			}
			ut.write(final)
			ut.write(done)
			if _, ok := openai.FindUsage(ut.buf); !ok {
				b.Fatal("no usage")
			}
		}
	})
}

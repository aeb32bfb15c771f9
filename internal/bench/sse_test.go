package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleStream = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n" +
	": keep-alive comment\n\n" +
	"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n" +
	"data:{\"choices\":[{\"delta\":{\"reasoning_content\":\"hmm\"}}]}\n\n" +
	"event: message\ndata: {\"choices\":[{\"delta\":{\"content\": \"lo \\\"content\\\":\\\"x\"}}]}\n\n" +
	"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n" +
	"data: [DONE]\n\n"

func splitLines(chunks ...string) []string {
	var s lineSplitter
	var lines []string
	collect := func(l []byte) { lines = append(lines, string(l)) }
	for _, c := range chunks {
		s.feed([]byte(c), collect)
	}
	s.flush(collect)
	return lines
}

func TestLineSplitterAnySplit(t *testing.T) {
	want := splitLines(sampleStream)
	if len(want) != 17 || want[0] != `data: {"choices":[{"delta":{"role":"assistant","content":""}}]}` || want[1] != "" {
		t.Fatalf("whole-stream lines: %q", want)
	}
	for i := range len(sampleStream) + 1 {
		for j := i; j <= len(sampleStream); j += 7 {
			got := splitLines(sampleStream[:i], sampleStream[i:j], sampleStream[j:])
			if !slices.Equal(got, want) {
				t.Fatalf("split at %d,%d: %q", i, j, got)
			}
		}
	}
	// Byte by byte, the worst case.
	chunks := strings.Split(sampleStream, "")
	if got := splitLines(chunks...); !slices.Equal(got, want) {
		t.Fatal("byte-by-byte split differs")
	}
	// A last line without a newline still counts.
	if got := splitLines("data: a\ndata: [DONE]"); !slices.Equal(got, []string{"data: a", "data: [DONE]"}) {
		t.Errorf("unterminated last line: %q", got)
	}
}

func TestLineSplitterDropsOverlongLines(t *testing.T) {
	long := strings.Repeat("x", maxLineBytes+10)
	got := splitLines("a\n", long[:100], long[100:], "\nb\n")
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("got %d lines, first %.20q", len(got), got)
	}
}

func TestStreamStats(t *testing.T) {
	var st streamStats
	var h histogram
	st.hist = &h
	for i, l := range splitLines(sampleStream) {
		st.line([]byte(l), time.Duration(i)*time.Millisecond)
	}
	if st.events != 3 {
		t.Errorf("content events %d, want 3 (role-only and finish chunks carry none)", st.events)
	}
	if st.first != 4*time.Millisecond {
		t.Errorf("first content at %v, want line 4's 4ms", st.first)
	}
	if st.gaps != 2 || h.n.Load() != 2 || st.maxGap != 3*time.Millisecond {
		t.Errorf("gaps %d (hist %d), max %v", st.gaps, h.n.Load(), st.maxGap)
	}
	if !st.hasUsage || st.usage != (usage{PromptTokens: 12, CompletionTokens: 3}) {
		t.Errorf("usage %+v (found %v)", st.usage, st.hasUsage)
	}
	if !st.done || st.errorEvent || st.dataAfterDone {
		t.Errorf("done %v error %v after-done %v", st.done, st.errorEvent, st.dataAfterDone)
	}

	var cut streamStats
	for _, l := range splitLines(sampleStream[:strings.Index(sampleStream, "data: [DONE]")]) {
		cut.line([]byte(l), 0)
	}
	if cut.done || !cut.hasUsage {
		t.Error("a stream cut before [DONE] must not count as done")
	}
	var bad streamStats
	bad.line([]byte(`data: {"error":{"message":"boom"}}`), 0)
	if !bad.errorEvent || bad.events != 0 {
		t.Error("error event not detected")
	}
}

func TestHasContent(t *testing.T) {
	for in, want := range map[string]bool{
		`{"delta":{"content":"a"}}`:             true,
		`{"delta":{"content": "a"}}`:            true,
		`{"delta":{"content":""}}`:              false,
		`{"delta":{"content":null}}`:            false,
		`{"delta":{"reasoning_content":"r"}}`:   true,
		`{"delta":{"role":"assistant"}}`:        false,
		`{"delta":{"content":"","x":"content":`: false,
		`content":`:                             false,
	} {
		if got := hasContent([]byte(in)); got != want {
			t.Errorf("hasContent(%s) = %v", in, got)
		}
	}
}

func TestFindUsage(t *testing.T) {
	u, ok := findUsage([]byte(`{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`))
	if !ok || u.PromptTokens != 5 || u.CompletionTokens != 7 {
		t.Errorf("%+v %v", u, ok)
	}
	u, ok = findUsage([]byte(`"usage": {"prompt_tokens_details":{"cached_tokens":99},"prompt_tokens" : 40,"completion_tokens":2}`))
	if !ok || u != (usage{PromptTokens: 40, CompletionTokens: 2}) {
		t.Errorf("nested details: %+v %v", u, ok)
	}
	for _, in := range []string{`{"usage":null}`, `{}`, `{"usage":{"prompt_tokens":"x"}}`, `"usage":`, `"usage":{"prompt_tokens":5`} {
		if _, ok := findUsage([]byte(in)); ok {
			t.Errorf("usage found in %s", in)
		}
	}
}

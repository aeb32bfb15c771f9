package telemetry

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// A value past MaxLogValue is cut at a rune boundary with the count of
// bytes left out; one within it is kept whole.
func TestClip(t *testing.T) {
	if s := strings.Repeat("a", MaxLogValue); Clip(s) != s {
		t.Fatalf("a value of exactly %d bytes was changed", MaxLogValue)
	}
	long := strings.Repeat("a", MaxLogValue-1) + strings.Repeat("é", 10000)
	got := Clip(long)
	want := strings.Repeat("a", MaxLogValue-1) + "…[+20000 bytes]"
	if got != want {
		t.Fatalf("Clip = %q, want %q", got[MaxLogValue-8:], want[MaxLogValue-8:])
	}
	if !utf8.ValidString(got) {
		t.Fatal("cut inside a rune")
	}
}

// The JSON logger writes a value holding a newline, a fake JSON line and
// an ANSI escape as one line, escaped: a client cannot forge a line.
func TestLoggerEscapesClientStrings(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	v := "m\n{\"level\":\"ERROR\",\"msg\":\"forged\"}\r\x1b[31mred\x00"
	l.Info("request", "model", Clip(v))
	out := buf.String()
	if strings.Count(out, "\n") != 1 || strings.ContainsAny(strings.TrimSuffix(out, "\n"), "\n\r\x1b\x00") {
		t.Fatalf("raw control characters in the line: %q", out)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(out), &line); err != nil || line["model"] != v {
		t.Fatalf("line %q does not decode to the value (%v)", out, err)
	}
}

package openai

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A value past MaxEcho is cut at a rune boundary with the count of bytes
// left out; one within it is kept whole.
func TestEcho(t *testing.T) {
	if s := strings.Repeat("a", MaxEcho); Echo(s) != s {
		t.Fatalf("a value of exactly %d bytes was changed", MaxEcho)
	}
	got := Echo(strings.Repeat("a", MaxEcho-1) + strings.Repeat("é", 1000))
	if want := strings.Repeat("a", MaxEcho-1) + "…[+2000 bytes]"; got != want {
		t.Fatalf("Echo = %q, want %q", got[MaxEcho-8:], want[MaxEcho-8:])
	}
	if !utf8.ValidString(got) {
		t.Fatal("cut inside a rune")
	}
}

package openai

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range []string{`{}`, `[]`, ` {"a":[1,-0,0.5e+3,true,false,null,"\u00e9\n"]} `, `"x"`, `0`, `-`, `01`, `1.`, `1e`, `.5`,
		`{"a"}`, `{"a":}`, `{,}`, `[1,]`, `[,1]`, `{"a":1,}`, `"\x"`, "\"\x01\"", `"\u12"`, `nul`, `truex`, `{"a":1}}`, `[[]`, ``, ` `,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), "\"\xff\xfe\""} {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"model":"m","messages":[{"role":"user","content":"a\"b\\u00e9"}],"n":-1.5e+3}`, `[1,2,[3,{"x":null}]]`, `{"a":tru}`, `"\ud800"`, `-0.0E-0`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}

func TestValidObject(t *testing.T) {
	for in, want := range map[string]bool{
		`{}`: true, " {\"a\":[1]}\n": true, `[]`: false, `"x"`: false, `{`: false, ``: false, `{} {}`: false, "\x00{}": false,
	} {
		if got := ValidObject([]byte(in)); got != want {
			t.Errorf("ValidObject(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestValidStringWordBoundaries: strings are checked a word at a time
// (skipPlain); every byte that matters, at every offset of a word and
// either side of a word's end, is judged as encoding/json judges it.
func TestValidStringWordBoundaries(t *testing.T) {
	for _, special := range []string{`\"`, `\\`, `\n`, `\u00e9`, "\x00", "\x1f", "\x20", "\x7f", "\x80", "\xff", `"`, `\`, `\x`} {
		for n := 0; n <= 24; n++ {
			for pad := 0; pad <= 9; pad++ {
				s := []byte(`["` + strings.Repeat("a", n) + special + strings.Repeat("b", pad) + `"]`)
				if got, want := validJSON(s), json.Valid(s); got != want {
					t.Errorf("validJSON(%q) = %v, json.Valid %v", s, got, want)
				}
			}
		}
	}
}

// firstNotUTF8 is the offset of b's first byte that is not UTF-8, -1 if
// none: the check the scan's note replaced, a second pass over the body.
func firstNotUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// checkUTF8Note checks that a scan noting UTF-8 judges b's grammar as
// encoding/json does and, when valid, notes the byte a pass of its own
// over b finds first.
func checkUTF8Note(t *testing.T, b []byte) {
	t.Helper()
	notes := scanNotes{utf8: true}
	ok := scanJSON(b, &notes)
	if want := json.Valid(b); ok != want {
		t.Fatalf("scanJSON(%q) noting UTF-8 = %v, json.Valid %v", b, ok, want)
	}
	if ok && notes.badUTF8-1 != firstNotUTF8(b) {
		t.Fatalf("scanJSON(%q) noted byte %d as the first not UTF-8, want %d", b, notes.badUTF8-1, firstNotUTF8(b))
	}
}

// TestUTF8NoteWordBoundaries: with UTF-8 noted, strings are still checked
// a word at a time (skipPlain stops at a byte that is not ASCII); runes
// valid, cut or overlong, at every offset of a word and either side of its
// end, and runs of them followed by ASCII or the string's end, are noted
// as a pass of utf8 over the body notes them.
func TestUTF8NoteWordBoundaries(t *testing.T) {
	for _, special := range []string{`\u00e9`, "é", "你好", "😀", "\xe9", "\xff", "\xe4\xbd", "\xed\xa0\x80", "\xc0\x80",
		"你\xe4\xbd好", "é\"", "aé\\n", "\xf0\x9f\x98", strings.Repeat("好", 5) + "\x80"} {
		for n := 0; n <= 17; n++ {
			for pad := 0; pad <= 9; pad++ {
				checkUTF8Note(t, []byte(`{"k`+special+`":["`+strings.Repeat("a", n)+special+strings.Repeat("b", pad)+`"]}`))
			}
		}
	}
}

// FuzzUTF8Note: the scan's UTF-8 note (which spares a request body a
// pass of utf8.Valid) agrees with that pass, and noting it changes no
// verdict of the grammar.
func FuzzUTF8Note(f *testing.F) {
	for _, s := range []string{"{\"a\":\"caf\xe9\"}", "{\"a\":\"\xed\xa0\x80\"}", `{"你":"好"}`, "[\"\xe4\xbd\"]", "\xff", `"\u00e9"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkUTF8Note)
}

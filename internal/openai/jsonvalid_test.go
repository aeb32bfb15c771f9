package openai

import (
	"encoding/json"
	"strings"
	"testing"
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

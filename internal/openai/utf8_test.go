package openai

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestBodyNotUTF8IsRefused: a body the JSON grammar accepts but whose
// bytes are not UTF-8 (a Latin-1 é, a surrogate encoded in UTF-8, a cut
// rune) is a 400 invalid_json naming the byte, on every JSON endpoint's
// parser, as a Python backend's json.loads refuses it; UTF-8 text (CJK,
// an emoji, the escapes \ud83d\ude00 and \u00e9) passes.
func TestBodyNotUTF8IsRefused(t *testing.T) {
	parsers := map[string]func([]byte) error{
		"chat":      func(b []byte) error { _, err := ParseRequest(b); return err },
		"responses": func(b []byte) error { _, _, err := ParseResponsesRequest(b); return err },
		"rerank":    func(b []byte) error { _, _, err := ParseEndpointRequest(EndpointRerank, b); return err },
	}
	bodies := map[string]string{
		"chat":      `{"model":"m","messages":[{"role":"user","content":"%s"}]}`,
		"responses": `{"model":"m","input":"%s"}`,
		"rerank":    `{"model":"m","query":"%s","documents":["a"]}`,
	}
	for name, parse := range parsers {
		// at: the offset in bad of the first byte that is not UTF-8.
		for _, bad := range []struct {
			s  string
			at int
		}{{"caf\xe9", 3}, {"\xed\xa0\x80", 0}, {"\xe4\xbd", 0}, {"ok\xff", 2}} {
			body := strings.Replace(bodies[name], "%s", bad.s, 1)
			err := parse([]byte(body))
			e, ok := err.(*Error)
			if !ok || e.Status != 400 || e.Code != "invalid_json" || !strings.Contains(e.Message, "not UTF-8") ||
				!strings.Contains(e.Message, "at byte "+strconv.Itoa(strings.Index(body, bad.s)+bad.at)+")") {
				t.Errorf("%s %q: %v", name, body, err)
			}
		}
		for _, good := range []string{"你好", "😀", `\ud83d\ude00`, `caf\u00e9`} {
			if err := parse([]byte(strings.Replace(bodies[name], "%s", good, 1))); err != nil {
				t.Errorf("%s %q refused: %v", name, good, err)
			}
		}
	}
}

// firstInvalidRune is the offset of b's first byte utf8.DecodeRune reads
// as an encoding error (RuneError of width 1; U+FFFD itself is width 3),
// -1 if none: an oracle of its own, with no utf8.Valid shortcut.
func firstInvalidRune(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// FuzzBodyUTF8Verdict: every JSON parser of a request body refuses it for
// its UTF-8 exactly when json.Valid accepts it and utf8.Valid does not,
// naming the byte and offset a rune-by-rune decode of the whole body finds
// first; a body that is not JSON is never refused for its UTF-8. The
// input is placed in a string value, a key, or used whole, so most of the
// bytes the fuzzer tries reach the scan's string loop.
func FuzzBodyUTF8Verdict(f *testing.F) {
	for _, s := range []string{"caf\xe9", "\xed\xa0\x80", "\xed\x9f\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xf4\x90\x80\x80",
		"\xf4\x8f\xbf\xbf", "\xf5", "\xff", "\xef\xbf\xbd", "\xf0\x9f\x98", "你好😀", `\ud800`, strings.Repeat("é", 9) + "\xe4\xbd"} {
		for wrap := range uint8(3) {
			f.Add(uint8(0), wrap, []byte(s))
		}
	}
	f.Add(uint8(1), uint8(0), []byte("{\"model\":\"m\",\"input\":\"x\"}\xc3"))
	f.Add(uint8(2), uint8(0), []byte("\xef\xbb\xbf{\"model\":\"m\"}"))
	f.Add(uint8(3), uint8(0), []byte("{\"model\":\"m\",\xc3\xa9:1}"))
	f.Fuzz(func(t *testing.T, which, wrap uint8, s []byte) {
		var body []byte
		switch wrap % 3 {
		case 0:
			body = s
		case 1:
			body = append(append([]byte(`{"model":"m","input":"`), s...), `","query":"q"}`...)
		case 2:
			body = append(append([]byte(`{"model":"m","k`), s...), `":[1]}`...)
		}
		var err error
		switch which % 4 {
		case 0:
			_, err = ParseRequest(body)
		case 1:
			_, err = parseRequest(body, false)
		case 2:
			_, _, err = ParseResponsesRequest(body)
		case 3:
			_, _, err = ParseEndpointRequest(ModelEndpoint(which/4%uint8(EndpointDetokenize)+1), body)
		}
		e, _ := err.(*Error)
		refused := e != nil && strings.Contains(e.Message, "not UTF-8")
		valid, bad := json.Valid(body), firstInvalidRune(body)
		switch {
		case !valid && (err == nil || refused):
			t.Fatalf("%q is not JSON: %v", body, err)
		case valid && bad >= 0:
			want := fmt.Sprintf("We could not parse the JSON body of your request: it is not UTF-8 text (byte 0x%x at byte %d); JSON must be sent as UTF-8", body[bad], bad)
			if e == nil || e.Status != 400 || e.Code != "invalid_json" || e.Message != want {
				t.Fatalf("%q: %v, want %q", body, err, want)
			}
		case valid && refused:
			t.Fatalf("%q is UTF-8 and JSON, refused: %v", body, err)
		}
	})
}

package openai

import (
	"strconv"
	"strings"
	"testing"
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

package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestErrorJSONIsValidJSON: an error message echoes what the client sent
// (an unknown model, an unknown URL), which may hold control characters,
// invalid UTF-8 or characters Go's strconv.Quote escapes its own way
// (\x00, \a, \U000f0000: not JSON). The object must still be valid JSON,
// and decode to the message with invalid bytes as U+FFFD.
func TestErrorJSONIsValidJSON(t *testing.T) {
	for _, msg := range []string{
		"plain",
		"nul \x00 bel \a vt \v esc \x1b del \x7f",
		"invalid utf-8 \xff\xfe and a cut rune \xe2\x82",
		"quote \" backslash \\ slash / tab \t cr \r lf \n",
		"outside the BMP, not printable: \U000f0000; printable: \U0001f600",
		"line separators \u2028 \u2029, BOM \ufeff, replacement \ufffd",
		"<script>&amp;</script>",
	} {
		e := &Error{Status: 404, Type: TypeInvalidRequest, Code: "model_not_found", Param: "mo\x00del", Message: msg}
		out := e.JSON()
		if !json.Valid(out) {
			t.Errorf("%q: not valid JSON: %s", msg, out)
			continue
		}
		var got struct {
			Error struct{ Message, Type, Param, Code string }
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if got.Error.Message != jsonReplaced(msg) {
			t.Errorf("message %q decoded as %q", msg, got.Error.Message)
		}
		if got.Error.Param != "mo\x00del" || got.Error.Code != "model_not_found" || got.Error.Type != TypeInvalidRequest {
			t.Errorf("fields decoded as %+v", got.Error)
		}
		if !utf8.Valid(out) {
			t.Errorf("%q: output is not UTF-8: %q", msg, out)
		}
	}
}

// jsonReplaced is s as encoding/json encodes and decodes it: every
// invalid byte replaced with U+FFFD.
func jsonReplaced(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}

// TestDeepNestingIsNamed: a body nested deeper than the parser's limit
// is valid JSON by the grammar; the refusal says what is wrong (the
// depth) instead of calling it invalid JSON.
func TestDeepNestingIsNamed(t *testing.T) {
	deep := `{"model":"m","x":` + strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth) + `}`
	_, err := ParseRequest([]byte(deep))
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Code != "invalid_json" || !strings.Contains(e.Message, "nested more than 10000") {
		t.Fatalf("got %v", err)
	}
	if _, err := ParseRequest([]byte(`{"model":"m",}`)); err == nil || strings.Contains(err.Error(), "nested") {
		t.Fatalf("a syntax error: %v", err)
	}
}

// FuzzErrorJSON: whatever a client makes an error message echo, the
// object is valid JSON and its message decodes to what encoding/json's own
// encoding of the same string decodes to.
func FuzzErrorJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "nul \x00", "\xff\xfe", "\u2028\u2029", "\"\\", "\U0001f600\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		out := (&Error{Status: 400, Type: TypeInvalidRequest, Message: msg, Param: msg, Code: msg}).JSON()
		var got struct {
			Error struct{ Message, Param, Code string }
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: not valid JSON (%v): %s", msg, err, out)
		}
		ref, _ := json.Marshal(msg)
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if got.Error.Message != want || got.Error.Param != want || got.Error.Code != want {
			t.Fatalf("%q: decoded %+v, want %q", msg, got.Error, want)
		}
	})
}

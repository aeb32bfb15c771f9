package openai

import (
	"strconv"
	"unicode/utf8"
)

// MaxEcho is the most bytes of a client-chosen string (a model name, an
// id, a URL path, a custom_id) an error message quotes back. Names and
// ids are short; what a client sends past this is its own choice, and
// quoting it whole made the answer as long as the request (a 1 MB model
// name was a 1 MB 404).
const MaxEcho = 256

// Echo returns s cut to MaxEcho bytes at a rune boundary, with a marker
// saying how many bytes were left out, so a cut value never reads as the
// whole one: what an error message quotes of the client's input. The log
// keeps more (telemetry.Clip, 512 bytes).
func Echo(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	cut := MaxEcho
	for cut > MaxEcho-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[+" + strconv.Itoa(len(s)-cut) + " bytes]"
}

package telemetry

import (
	"strconv"
	"unicode/utf8"
)

// MaxLogValue is the most bytes of a client-chosen string (model, path,
// tenant, an error naming what the client sent) a log line carries. A
// model name is ~100 bytes at most in practice; what a client sends past
// this is its own choice, and copying it whole would let one request
// write a line as long as its body (8 MiB by default) and crowd everyone
// else's lines out of the log buffer (telemetry/buffered.go).
const MaxLogValue = 512

// Clip returns s cut to MaxLogValue bytes at a rune boundary, with a
// marker saying how many bytes were left out, so a cut value never reads
// as the whole one. Escaping is the JSON handler's: it writes newlines,
// ESC and other control characters as \n and \u001b, so a value cannot
// start a line of its own or colour a terminal.
func Clip(s string) string {
	if len(s) <= MaxLogValue {
		return s
	}
	cut := MaxLogValue
	for cut > MaxLogValue-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[+" + strconv.Itoa(len(s)-cut) + " bytes]"
}

package proxy

import (
	"bytes"

	"github.com/sluice-gw/sluice/internal/openai"
)

// maxEvent bounds one SSE event the relay holds while it waits for the
// event's end. A completion chunk is a few hundred bytes, one with many
// logprobs a few KiB; an event this large is a broken backend.
const maxEvent = 256 << 10

// sseCheck follows an upstream event stream and checks every event before
// it is relayed: its data must be a JSON object (a chunk or an error) or
// [DONE]. Comments and events without data (keep-alives, retry:, id:)
// pass. Events are checked whole, so the relay only ever sends complete
// events and the client's framing stays intact when a stream breaks.
type sseCheck struct {
	done    bool   // [DONE] seen: the rest passes unchecked
	errored bool   // the backend sent an error object itself
	joined  []byte // the data of an event with several data lines
	pending []byte // the start of an event still arriving
	sent    int    // pending's leading bytes returned by the last feed
	// errFirst: the error was the stream's first event (a Responses
	// stream's first output event): no generation began before it;
	// begun: an output event was accepted (a first token, stream.go).
	errFirst, begun bool
	// afterCR: the bytes returned by the last feed ended an event with a
	// lone \r, which may be the first half of a \r\n cut across reads: a
	// \n that starts the next feed ends the same line.
	afterCR bool
	// api is the request's API: a Responses API stream (respEvents) has
	// no [DONE], and ends with its final event instead.
	api  openai.API
	resp respEvents
	// transcript: a streamed transcription or translation (the audio
	// endpoints), which may end with OpenAI's transcript.text.done event
	// instead of [DONE]; final: that event was seen.
	transcript, final bool
	// unended: the stream's end cut its final event before its blank
	// line (scan at EOF); feed adds the line ends (terminate).
	unended bool
}

// ended reports whether the stream reached an end of its own: [DONE], a
// Responses stream's final event, a transcription's transcript.text.done,
// or an error the backend sent in band.
func (s *sseCheck) ended() bool { return s.done || s.errored || s.final }

// feed takes the next bytes of the stream and returns the whole, checked
// events now ready to relay: a slice of p or of the check's own buffer,
// valid until the next feed. bad reports a malformed event (or one over
// maxEvent) after them; the stream must then end.
func (s *sseCheck) feed(p []byte, atEOF bool) (out []byte, bad bool) {
	if s.sent > 0 {
		s.pending = append(s.pending[:0], s.pending[s.sent:]...) // may overlap: append moves
		s.sent = 0
	}
	chunk := p
	held := len(s.pending) > 0
	if held {
		s.pending = append(s.pending, p...)
		chunk = s.pending
	}
	k, bad := s.scan(chunk, atEOF)
	if len(chunk)-k > maxEvent {
		bad = true
	}
	if s.unended {
		return s.terminate(chunk[:k], held), bad
	}
	if held {
		s.sent = k
	} else if !bad {
		s.pending = append(s.pending, chunk[k:]...)
	}
	return chunk[:k], bad
}

// terminate returns out, the stream's last bytes, with the line ends its
// final event lacked: a backend that closed the stream after
// "data: [DONE]" (or a chunk, or a comment) with no blank line. A client
// discards an event the stream ends inside (the SSE spec's "pending data
// must be discarded"), so the [DONE] was lost to it; and the error event
// the relay appends to a stream without [DONE] was joined to the open
// line (a chunk's JSON followed by "data: {...}", or a comment that
// swallowed the whole error event). A "\n" after a "\r" would pair with
// it as one line end, so only a final "\n" takes a single one. It runs
// once, at the end of the stream, and copies out into the check's own
// buffer when out is the caller's.
func (s *sseCheck) terminate(out []byte, held bool) []byte {
	s.unended = false
	end := finalLineEnds(out)
	if !held {
		s.pending = append(s.pending[:0], out...)
	} else {
		s.pending = s.pending[:len(out)] // out is pending's start (sent = k)
	}
	s.pending = append(s.pending, end...)
	s.sent = len(s.pending)
	return s.pending
}

// finalLineEnds is what the last event of out, ended by the stream
// inside it, lacked: a "\n" after a "\r" would pair with it as one line
// end, so only a final "\n" takes a single one.
func finalLineEnds(out []byte) string {
	if out[len(out)-1] == '\n' {
		return "\n"
	}
	return "\n\n"
}

// closeFinal is terminate for whole's callers: out, whole's events (the
// caller's buffer), with the line ends its final event lacked when the
// stream ended inside it, in a copy (once per stream, at its end); out
// itself otherwise.
func (s *sseCheck) closeFinal(out []byte) []byte {
	if !s.unended {
		return out
	}
	s.unended = false
	return append(out[:len(out):len(out)], finalLineEnds(out)...)
}

// whole is feed for a caller that keeps an event cut across reads itself
// and passes it again, completed, with the next bytes (readBuf): p starts
// at an event's start; n is how many of its leading bytes are whole,
// checked events; bad as feed's.
func (s *sseCheck) whole(p []byte, atEOF bool) (n int, bad bool) {
	n, bad = s.scan(p, atEOF)
	if len(p)-n > maxEvent {
		bad = true
	}
	return n, bad
}

// scan returns how many leading bytes of p are complete, valid events
// (after [DONE], all of p). bad reports a malformed event right after
// those n bytes. At the end of the stream (atEOF) a final event without
// its blank line is checked like a whole one.
func (s *sseCheck) scan(p []byte, atEOF bool) (n int, bad bool) {
	if s.done {
		return len(p), false
	}
	i := 0
	if len(p) > 0 && s.afterCR {
		s.afterCR = false
		if p[0] == '\n' {
			i = 1 // the \n of a \r\n whose \r ended the last event
		}
	}
	start := i // the current event's first byte
	var data []byte
	lines := 0 // data lines in the current event
	for i < len(p) {
		j := lineEnd(p[i:])
		if j < 0 {
			break // an unfinished line
		}
		line, next := p[i:i+j], i+j+1
		// A \r at the end of p ends its line now, whatever follows: a
		// line it ends within an event is scanned again with the next
		// read (the event is held whole), and one that ends the event
		// lets the event go at once (afterCR takes a \n that follows).
		if p[i+j] == '\r' && next < len(p) && p[next] == '\n' {
			next++
		}
		i = next
		if len(line) > 0 {
			if !knownLine(line) {
				return start, true
			}
			if v, ok := dataField(line); ok {
				lines++
				switch lines {
				case 1:
					data = v
				case 2:
					s.joined = append(append(append(s.joined[:0], data...), '\n'), v...)
					data = s.joined
				default:
					s.joined = append(append(s.joined, '\n'), v...)
					data = s.joined
				}
			}
			continue
		}
		// A blank line ends the event.
		if lines > 0 && !s.accept(data) {
			return start, true
		}
		start, data, lines = i, nil, 0
		if s.done {
			return len(p), false
		}
		if i == len(p) && p[i-1] == '\r' {
			s.afterCR = true
		}
	}
	if atEOF && start < len(p) {
		if i < len(p) { // the last line had no line end
			if !knownLine(p[i:]) {
				return start, true
			}
			if v, ok := dataField(p[i:]); ok {
				lines++
				if lines == 1 {
					data = v
				} else {
					s.joined = append(append(s.joined, '\n'), v...)
					data = s.joined
				}
			}
		}
		if lines > 0 && !s.accept(data) {
			return start, true
		}
		s.unended = true // p[start:] is relayed without its blank line
		return len(p), false
	}
	return start, false
}

// lineEnd is bytes.IndexAny(p, "\r\n"): the first line end of p, or -1.
// IndexAny tests a two-byte set one byte at a time; two vectorised
// IndexByte searches (for \n, then for \r in the line before it) find the
// same byte. Every line of every relayed event passes here: it was 5% of
// the server's CPU relaying 64-token streams (docs/BENCHMARKS.md, the
// streaming relay section).
func lineEnd(p []byte) int {
	n := bytes.IndexByte(p, '\n')
	if n < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if r := bytes.IndexByte(p[:n], '\r'); r >= 0 {
		return r
	}
	return n
}

// accept checks one event's data.
func (s *sseCheck) accept(data []byte) bool {
	if string(data) == "[DONE]" {
		s.done = true
		return true
	}
	if !openai.ValidObject(data) {
		return false
	}
	before := s.begun
	if s.api == openai.APIResponses {
		s.acceptResponses(data)
	}
	if s.transcript && !s.final {
		s.final = openai.TranscriptDone(data)
	}
	// OpenAI's {"error":...} or vLLM's {"object":"error",...}, which put
	// that member first: a prefix test keeps the per-event cost of the
	// check; a cache fill searches every event whole (gateway entryFrom).
	if t := bytes.TrimLeft(data, " \t\r\n"); (bytes.HasPrefix(t, errorFirst) || bytes.HasPrefix(t, vllmErrorFirst)) && openai.ErrorObject(t) {
		s.errored = true
	}
	s.noteBegun(before)
	return true
}

// noteBegun follows accept's event: with none begun before it, an error
// event is the stream's first; any event that is output begins it (a
// Responses stream's lifecycle events do not: no token yet).
func (s *sseCheck) noteBegun(before bool) {
	if !before && s.errored {
		s.errFirst = true
	}
	if s.api != openai.APIResponses || s.resp.output {
		s.begun = true
	}
}

var errorFirst, vllmErrorFirst = []byte(`{"error"`), []byte(`{"object":"error"`)

// knownLine reports whether line is a comment or one of the fields an
// event stream has (data, event, id, retry). The SSE grammar lets a
// client ignore other lines, but a backend that sends them (an HTML error
// page, a stray log line) is not speaking the protocol.
func knownLine(line []byte) bool {
	if line[0] == ':' {
		return true
	}
	name, _, _ := bytes.Cut(line, []byte(":"))
	switch string(name) {
	case "data", "event", "id", "retry":
		return true
	}
	return false
}

// dataField returns the value of a "data" line: the text after "data:",
// less one leading space.
func dataField(line []byte) ([]byte, bool) {
	if !bytes.HasPrefix(line, []byte("data")) {
		return nil, false
	}
	rest := line[4:]
	switch {
	case len(rest) == 0:
		return rest, true
	case rest[0] != ':':
		return nil, false // another field, such as "dataset:"
	}
	rest = rest[1:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, true
}

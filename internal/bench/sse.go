package bench

import (
	"bytes"
	"time"
)

// maxLineBytes bounds one SSE line; longer lines are dropped, so a broken
// server cannot make the client buffer without limit.
const maxLineBytes = 1 << 20

// lineSplitter cuts a byte stream into lines wherever the reads happen to
// split it. Lines end at "\n"; a trailing "\r" is removed.
type lineSplitter struct {
	partial  []byte
	overflow bool // dropping the rest of an over-long line
}

// feed calls fn for each line completed by chunk. The slice passed to fn is
// only valid during the call.
func (s *lineSplitter) feed(chunk []byte, fn func(line []byte)) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			s.keep(chunk)
			return
		}
		line := chunk[:i]
		chunk = chunk[i+1:]
		if s.overflow {
			s.overflow = false
			continue
		}
		if len(s.partial) > 0 {
			s.partial = append(s.partial, line...)
			line = s.partial
			s.partial = s.partial[:0]
		}
		fn(bytes.TrimSuffix(line, []byte{'\r'}))
	}
}

func (s *lineSplitter) keep(b []byte) {
	if s.overflow {
		return
	}
	if len(s.partial)+len(b) > maxLineBytes {
		s.partial, s.overflow = s.partial[:0], true
		return
	}
	s.partial = append(s.partial, b...)
}

// flush delivers a last line that had no newline (a stream cut short).
func (s *lineSplitter) flush(fn func(line []byte)) {
	if len(s.partial) > 0 && !s.overflow {
		fn(bytes.TrimSuffix(s.partial, []byte{'\r'}))
	}
	s.partial, s.overflow = s.partial[:0], false
}

// streamStats accumulates what one SSE response tells us. Each "data:" line
// is one event (OpenAI-compatible servers never split an event over several
// data lines). Events are classified by cheap byte searches; only the usage
// object is decoded.
type streamStats struct {
	events        int // content-bearing events
	first, last   time.Duration
	gaps          int           // inter-token gaps seen
	maxGap        time.Duration // the longest of them
	hist          *histogram    // where gaps are recorded; nil = nowhere
	usage         usage
	hasUsage      bool
	done          bool // saw data: [DONE]
	errorEvent    bool // a {"error": ...} event
	dataAfterDone bool
}

type usage struct {
	PromptTokens, CompletionTokens int
}

// line handles one SSE line observed at t (time since the request started).
func (st *streamStats) line(l []byte, t time.Duration) {
	payload, ok := bytes.CutPrefix(l, []byte("data:"))
	if !ok {
		return // comments, event:, id:, retry:, blank separators
	}
	payload = bytes.TrimLeft(payload, " ")
	if st.done {
		st.dataAfterDone = true
	}
	if bytes.Equal(bytes.TrimRight(payload, " "), []byte("[DONE]")) {
		st.done = true
		return
	}
	if bytes.HasPrefix(payload, []byte(`{"error"`)) {
		st.errorEvent = true
	}
	if hasContent(payload) {
		if st.events == 0 {
			st.first = t
		} else {
			gap := t - st.last
			st.gaps++
			st.maxGap = max(st.maxGap, gap)
			if st.hist != nil {
				st.hist.add(gap)
			}
		}
		st.last = t
		st.events++
	}
	if u, ok := findUsage(payload); ok {
		st.usage, st.hasUsage = u, true
	}
}

const contentKey = `content":`

// hasContent reports whether payload carries a non-empty "content" or
// "reasoning_content" string (the role-only first chunk and the final usage
// chunk carry none). A quote inside a JSON string is escaped, so the key
// pattern cannot match inside generated text.
func hasContent(p []byte) bool {
	for {
		i := bytes.Index(p, []byte(contentKey))
		if i < 0 {
			return false
		}
		p = bytes.TrimLeft(p[i+len(contentKey):], " ")
		if len(p) >= 2 && p[0] == '"' && p[1] != '"' {
			return true
		}
	}
}

const usageKey = `"usage":`

// findUsage reads the last non-null "usage" object in b. It runs on every
// event, so it scans bytes instead of calling encoding/json: it takes the
// object up to its matching brace and reads the two integer fields.
func findUsage(b []byte) (usage, bool) {
	i := bytes.LastIndex(b, []byte(usageKey))
	if i < 0 {
		return usage{}, false
	}
	obj := bytes.TrimLeft(b[i+len(usageKey):], " \t\r\n")
	if len(obj) == 0 || obj[0] != '{' {
		return usage{}, false
	}
	depth, end := 0, -1
	for j := 0; j < len(obj) && end < 0; j++ {
		switch obj[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				end = j + 1
			}
		}
	}
	if end < 0 {
		return usage{}, false // cut off
	}
	obj = obj[:end]
	p, okP := intField(obj, `"prompt_tokens"`)
	c, okC := intField(obj, `"completion_tokens"`)
	if !okP && !okC {
		return usage{}, false
	}
	return usage{PromptTokens: p, CompletionTokens: c}, true
}

// intField reads the non-negative integer value of key ("name", quotes
// included) in obj.
func intField(obj []byte, key string) (int, bool) {
	for {
		i := bytes.Index(obj, []byte(key))
		if i < 0 {
			return 0, false
		}
		obj = bytes.TrimLeft(obj[i+len(key):], " \t\r\n")
		if len(obj) == 0 || obj[0] != ':' {
			continue // the name appeared as a value
		}
		v := bytes.TrimLeft(obj[1:], " \t\r\n")
		n, digits := 0, 0
		for ; digits < len(v) && digits < 18 && v[digits] >= '0' && v[digits] <= '9'; digits++ {
			n = n*10 + int(v[digits]-'0')
		}
		return n, digits > 0
	}
}

package scrape

import (
	"bytes"
	"math"
	"strconv"
)

// reading is what one exposition said about the wanted quantities.
type reading struct {
	running, waiting family
	kv               family
	bound            family // the engine's reported batch bound
	kvSize           family // the engine's KV cache in tokens
}

// family accumulates the samples of one quantity. Samples of the preferred
// name (lowest rank in its Names list) win; samples of the same name are
// combined over label sets: summed for counts, the largest for a fraction
// (two engines at 60% KV usage are not at 120%).
type family struct {
	val      float64
	rank     int
	seen     bool
	keepsMax bool
}

func (f *family) add(rank int, v float64) {
	switch {
	case !f.seen || rank < f.rank:
		f.val, f.rank, f.seen = v, rank, true
	case rank > f.rank:
	case f.keepsMax:
		f.val = max(f.val, v)
	default:
		f.val += v
	}
}

// value is the family's result; ok is false when no usable sample was seen
// (a sum that overflowed to +Inf is garbage, not a measurement).
func (f family) value() (v float64, ok bool) {
	if !f.seen || math.IsInf(f.val, 0) {
		return 0, false
	}
	return f.val, true
}

// parseExposition reads the wanted series out of a Prometheus text
// exposition (format 0.0.4; OpenMetrics text parses the same for gauges).
// It is a line scanner, not a full parser: comments, other metrics
// (histogram _bucket/_sum/_count lines included) and malformed lines are
// skipped one line at a time, so one bad line never loses the others. It
// does not allocate. Samples that are NaN, infinite or negative are
// skipped: none of the wanted quantities can be, and one would poison a sum.
// Names quoted inside the braces (the UTF-8 form, {"name",l="v"}) are not
// recognised; servers only send it when asked for it.
func parseExposition(data []byte, n *Names) reading {
	r := reading{kv: family{keepsMax: true}}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		r.line(line, n)
	}
	return r
}

func (r *reading) line(line []byte, n *Names) {
	line = trimBlank(line)
	if len(line) == 0 || line[0] == '#' {
		return
	}
	end := 0
	for end < len(line) && line[end] != '{' && !isBlank(line[end]) {
		end++
	}
	f, rank := r.lookup(line[:end], n)
	if f == nil {
		return
	}
	rest := trimBlank(line[end:])
	var labels []byte
	if len(rest) > 0 && rest[0] == '{' {
		j := labelsEnd(rest)
		if j < 0 {
			return
		}
		labels, rest = rest[:j], rest[j:]
		if len(rest) > 0 && !isBlank(rest[0]) {
			return // "}1" or "}x 1": not a sample line
		}
		rest = trimBlank(rest)
	}
	if len(rest) == 0 {
		return // a name with no value
	}
	k := 0
	for k < len(rest) && !isBlank(rest[k]) {
		k++
	}
	if ts := trimBlank(rest[k:]); len(ts) > 0 && !isTimestamp(ts) {
		return
	}
	v, ok := parseValue(rest[:k])
	if !ok {
		return
	}
	if f == &r.kvSize && bytes.HasSuffix(line[:end], []byte("_info")) {
		// An info series says its value in its labels (the sample is 1).
		if v, ok = cacheTokens(labels); !ok {
			return
		}
	}
	f.add(rank, v)
}

// cacheTokens reads the KV cache's size in tokens from the labels of
// vLLM's vllm:cache_config_info: num_gpu_blocks x block_size. ok is false
// when either is missing or not a positive number (vLLM writes "None"
// before the engine has sized its cache).
func cacheTokens(labels []byte) (tokens float64, ok bool) {
	blocks, okB := labelNumber(labels, "num_gpu_blocks")
	size, okS := labelNumber(labels, "block_size")
	if !okB || !okS || blocks <= 0 || size <= 0 {
		return 0, false
	}
	return blocks * size, true
}

// labelNumber finds key's value in a label set ({k="v",...}) and parses it
// as a sample value; values with escapes are not numbers and are skipped.
func labelNumber(labels []byte, key string) (float64, bool) {
	for i := 1; i < len(labels); {
		for i < len(labels) && (isBlank(labels[i]) || labels[i] == ',') {
			i++
		}
		eq := bytes.IndexByte(labels[i:], '=')
		if eq < 0 {
			return 0, false
		}
		name := trimBlank(labels[i : i+eq])
		i += eq + 1
		for i < len(labels) && isBlank(labels[i]) {
			i++
		}
		if i >= len(labels) || labels[i] != '"' {
			return 0, false
		}
		i++
		start, escaped := i, false
		for i < len(labels) && labels[i] != '"' {
			if labels[i] == '\\' {
				escaped = true
				i++
			}
			i++
		}
		if i >= len(labels) {
			return 0, false
		}
		value := labels[start:i]
		i++ // the closing quote
		if string(name) == key {
			if escaped {
				return 0, false
			}
			return parseValue(value)
		}
	}
	return 0, false
}

// parseValue parses a sample value as Prometheus does (Go float syntax
// without Go's digit separators and hexadecimal floats) and accepts only
// finite, non-negative values.
func parseValue(s []byte) (float64, bool) {
	if bytes.ContainsAny(s, "_pP") {
		return 0, false
	}
	// string(s) is not copied to the heap: the argument does not escape
	// (strconv copies its input itself when it builds an error).
	v, err := strconv.ParseFloat(string(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, false
	}
	return v, true
}

// lookup finds the family name belongs to and its rank there.
func (r *reading) lookup(name []byte, n *Names) (*family, int) {
	if len(name) == 0 {
		return nil, 0
	}
	for i, s := range n.Running {
		if string(name) == s {
			return &r.running, i
		}
	}
	for i, s := range n.Waiting {
		if string(name) == s {
			return &r.waiting, i
		}
	}
	for i, s := range n.KVCache {
		if string(name) == s {
			return &r.kv, i
		}
	}
	for i, s := range n.BatchBound {
		if string(name) == s {
			return &r.bound, i
		}
	}
	for i, s := range n.KVSize {
		if string(name) == s {
			return &r.kvSize, i
		}
	}
	return nil, 0
}

// labelsEnd returns the index just past the '}' closing the label set that
// s starts with, honouring quoted values and their backslash escapes, or -1
// if the line ends first.
func labelsEnd(s []byte) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\':
			i++ // the escaped character, whatever it is
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i + 1
		}
	}
	return -1
}

// isTimestamp reports whether s is an integer (milliseconds since the
// epoch, as the text format allows after the value).
func isTimestamp(s []byte) bool {
	if s[0] == '-' || s[0] == '+' {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isBlank covers the separators of the text format, plus the '\r' of CRLF
// line ends.
func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

func trimBlank(s []byte) []byte {
	for len(s) > 0 && isBlank(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isBlank(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

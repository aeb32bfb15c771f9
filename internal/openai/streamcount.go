package openai

import "bytes"

// CountTextEvents counts the events in p (whole SSE events, as a relay
// writes them) whose data carries generated text: a non-empty string in
// one of the members above. A stream whose client did not ask for usage
// (stream_options.include_usage) reports none, and this is what the
// gateway can count instead: OpenAI, vLLM (its default stream interval),
// SGLang, llama.cpp and the simulator send one such event per generated
// token, so the count is the completion's tokens. A server that packs
// several tokens into an event is undercounted (documented in
// docs/RELIABILITY.md). It scans bytes rather than decoding JSON: it runs
// on every event of such streams.
func CountTextEvents(p []byte) int {
	n := 0
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) > 5 && string(line[:5]) == "data:" && hasText(line[5:]) {
			n++
		}
	}
	return n
}

// hasText reports whether data has, as a member of an object, a key that
// carries generated text (isTextKey) with a non-empty string value. It
// walks the colons back from the end, where servers put the delta (after
// it come logprobs and finish_reason, OpenAI's "usage":null): two or three
// colons for a token's event, rather than a search for each key, which
// starts at every '"' of the chunk (callgrind, a simulator event: ~550
// instructions for one key's search, ~1,200 for a forward walk of the
// colons, ~400 for this).
func hasText(data []byte) bool {
	for end := len(data); ; {
		c := bytes.LastIndexByte(data[:end], ':')
		if c < 2 {
			return false
		}
		end = c
		if data[c-1] != '"' {
			continue // not the end of a key
		}
		v := c + 1
		for v < len(data) && (data[v] == ' ' || data[v] == '\t') {
			v++
		}
		if v+1 >= len(data) || data[v] != '"' || data[v+1] == '"' {
			continue // not a non-empty string
		}
		k := c - 2 // the key's last byte; keys here have no escapes
		for k >= 0 && data[k] != '"' {
			k--
		}
		if k >= 0 && isTextKey(data[k+1:c-1]) {
			return true
		}
	}
}

// isTextKey reports the members of a chat or completions chunk that carry
// generated text: a delta's content, reasoning (vLLM's reasoning_content,
// reasoning), refusal and tool-call arguments, and a completion's text.
func isTextKey(k []byte) bool {
	switch string(k) {
	case "content", "text", "arguments", "reasoning_content", "reasoning", "refusal":
		return true
	}
	return false
}

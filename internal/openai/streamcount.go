package openai

import "bytes"

// textKeys are the members of a chat or completions chunk that carry
// generated text: a delta's content, reasoning (vLLM's reasoning_content,
// reasoning), refusal and tool-call arguments, and a completion's text.
var textKeys = [...][]byte{
	[]byte(`"content":`), []byte(`"text":`), []byte(`"arguments":`),
	[]byte(`"reasoning_content":`), []byte(`"reasoning":`), []byte(`"refusal":`),
}

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

// hasText reports whether data has one of textKeys with a non-empty
// string value.
func hasText(data []byte) bool {
	for _, k := range textKeys {
		for rest := data; ; {
			i := bytes.Index(rest, k)
			if i < 0 {
				break
			}
			v := bytes.TrimLeft(rest[i+len(k):], " \t")
			if len(v) >= 2 && v[0] == '"' && v[1] != '"' {
				return true
			}
			rest = rest[i+len(k):]
		}
	}
	return false
}

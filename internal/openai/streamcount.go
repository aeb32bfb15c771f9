package openai

import "bytes"

// CountText counts the events in p (whole SSE events, as a relay writes
// them) of a stream of api whose data carries generated text, a non-empty
// string in one of the members isTextKey names, and the bytes of that
// text as the JSON spells it (escapes included). A Responses API stream's
// text is its "delta" strings (response.output_text.delta, the reasoning,
// refusal and function-call argument deltas); its "text" members repeat
// what the deltas said (output_text.done, content_part.done, the final
// response), and are not counted. A stream whose client did not ask for
// usage (stream_options.include_usage) reports none, and this is what the
// gateway can count instead: OpenAI, vLLM (its default stream interval),
// SGLang and the simulator send one such event per generated token, so
// the events are the completion's tokens; a server that packs several
// tokens into an event (vLLM's --stream-interval above 1, hosted APIs'
// larger chunks) is counted by its text's bytes instead (CompletionTokens).
// It scans bytes rather than decoding JSON: it runs on every event of
// such streams.
func CountText(p []byte, api API) (events, textBytes int) {
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) > 5 && string(line[:5]) == "data:" {
			if n := textLen(line[5:], api); n > 0 {
				events++
				textBytes += n
			}
		}
	}
	return events, textBytes
}

// CompletionTokens is the completion's tokens as a stream's relay counted
// them (CountText), when the backend reported no usage: the events that
// carried text, or the text's bytes / 4 (the estimate the prompt side and
// admission use: admission.EstimateCost) when that is more, which it is
// for a server sending several tokens an event. For one token an event
// the events win where tokens are short (code, whitespace) and the bytes
// where they are long (the simulator's whole words: ~5.6 bytes a token,
// so ~1.4 times its count).
func CompletionTokens(events, textBytes int) int64 {
	return max(int64(events), (int64(textBytes)+bytesPerToken-1)/bytesPerToken)
}

// bytesPerToken is the gateway's estimate of a token's bytes, as
// admission.EstimateCost counts a prompt.
const bytesPerToken = 4

// textLen is the length of the non-empty string value (its bytes between
// the quotes, as spelt) of data's last member whose key carries generated
// text (isTextKey), 0 when there is none. It
// walks the colons back from the end, where servers put the delta (after
// it come logprobs and finish_reason, OpenAI's "usage":null): two or three
// colons for a token's event, rather than a search for each key, which
// starts at every '"' of the chunk (callgrind, a simulator event: ~550
// instructions for one key's search, ~1,200 for a forward walk of the
// colons, ~400 for this).
func textLen(data []byte, api API) int {
	for end := len(data); ; {
		c := bytes.LastIndexByte(data[:end], ':')
		if c < 2 {
			return 0
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
		if k >= 0 && isTextKey(data[k+1:c-1], api) {
			return stringLen(data[v+1:])
		}
	}
}

// stringLen is the length of the JSON string body that s starts with (s
// begins after its opening quote): up to the first quote not escaped by
// an odd run of backslashes, or all of s if it is cut short.
func stringLen(s []byte) int {
	for i := 0; ; {
		q := bytes.IndexByte(s[i:], '"')
		if q < 0 {
			return len(s)
		}
		q += i
		b := q
		for b > 0 && s[b-1] == '\\' {
			b--
		}
		if (q-b)%2 == 0 {
			return q
		}
		i = q + 1
	}
}

// isTextKey reports the members of a chat or completions chunk that carry
// generated text: a delta's content, reasoning (vLLM's reasoning_content,
// reasoning), refusal and tool-call arguments, and a completion's text;
// of a Responses API event, its delta (a string there; chat's delta is an
// object, never counted as one).
func isTextKey(k []byte, api API) bool {
	if api == APIResponses {
		return string(k) == "delta"
	}
	switch string(k) {
	case "content", "text", "arguments", "reasoning_content", "reasoning", "refusal":
		return true
	}
	return false
}

// TextWithin is how much of p (whole SSE events, following a stream's
// events and textBytes counted so far) stays within limit tokens as
// CompletionTokens counts them: p up to the start of the event that
// would pass it, all of p if none does.
func TextWithin(p []byte, api API, events, textBytes int, limit int64) int {
	start := 0 // where the current event began
	for pos := 0; pos < len(p); {
		line := p[pos:]
		next := len(p)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i], pos+i+1
		}
		switch {
		case len(line) == 0 || len(line) == 1 && line[0] == '\r':
			start = next // a blank line ends the event
		case len(line) > 5 && string(line[:5]) == "data:":
			if n := textLen(line[5:], api); n > 0 {
				events++
				textBytes += n
				if CompletionTokens(events, textBytes) > limit {
					return start
				}
			}
		}
		pos = next
	}
	return len(p)
}

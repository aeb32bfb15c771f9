package openai

// TranscriptDone reports whether data, a valid JSON object (a streamed
// transcription's event), is OpenAI's final transcription event,
// {"type":"transcript.text.done","text":...,"usage":...}: a
// gpt-4o-transcribe stream ends with it, and nothing says a [DONE]
// follows (vLLM's streams end with [DONE] instead). Only the top-level
// "type" is read, so a delta that quotes the name in its text is not one;
// OpenAI writes "type" first, so a delta costs one member's scan.
func TranscriptDone(data []byte) bool {
	m := newMembers(data)
	for {
		key, val, ok := m.next()
		if !ok {
			return false
		}
		if string(key) == "type" {
			return string(val) == `"transcript.text.done"`
		}
	}
}

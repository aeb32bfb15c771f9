package openai

import (
	"bytes"
	"testing"
)

func TestTranscriptDone(t *testing.T) {
	for data, want := range map[string]bool{
		`{"type":"transcript.text.done","text":"a","usage":{"type":"tokens","input_tokens":1,"output_tokens":1,"total_tokens":2}}`: true,
		` { "text" : "a" , "type" : "transcript.text.done" }`:                                                                      true,
		`{"type":"transcript.text.delta","delta":"transcript.text.done"}`:                                                          false,
		`{"delta":"\"type\":\"transcript.text.done\"","type":"transcript.text.delta"}`:                                             false,
		`{"id":"x","object":"transcription.chunk","choices":[{"delta":{"content":"transcript.text.done"}}]}`:                       false,
		`{"usage":{"type":"transcript.text.done"}}`:                                                                                false,
		`{}`: false,
	} {
		if got := TranscriptDone([]byte(data)); got != want {
			t.Errorf("%s: %v, want %v", data, got, want)
		}
	}
}

// FuzzTranscriptDone: any valid object is read without a panic, and one
// said to be the done event has that type.
func FuzzTranscriptDone(f *testing.F) {
	f.Add([]byte(`{"type":"transcript.text.done","text":"a"}`))
	f.Add([]byte(`{"delta":"x","type":"transcript.text.delta"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !ValidObject(data) {
			return
		}
		if TranscriptDone(data) && !bytes.Contains(data, []byte(`"transcript.text.done"`)) {
			t.Fatalf("%s", data)
		}
	})
}

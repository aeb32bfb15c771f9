package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
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

func TestTranscriptToJSON(t *testing.T) {
	for _, tc := range []struct{ name, stream, want string }{
		{"vLLM with usage",
			`data: {"id":"t","object":"transcription.chunk","created":1,"model":"m","choices":[{"delta":{"content":"a sluice"}}]}` + "\n\n" +
				`data: {"id":"t","object":"transcription.chunk","created":1,"model":"m","choices":[{"delta":{"content":" gate"},"finish_reason":"stop","stop_reason":null}]}` + "\n\n" +
				`data: {"id":"t","object":"transcription.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":17,"total_tokens":20,"completion_tokens":3}}` + "\n\n" +
				"data: [DONE]\n\n",
			`{"text":"a sluice gate","usage":{"type":"tokens","input_tokens":17,"output_tokens":3,"total_tokens":20}}`},
		{"vLLM translation, no usage",
			`data: {"object":"translation.chunk","choices":[{"delta":{"content":"<b>&"}}]}` + "\n\ndata: [DONE]\n\n",
			`{"text":"\u003cb\u003e\u0026"}`},
		{"OpenAI",
			`data: {"type":"transcript.text.delta","delta":"a sluice"}` + "\n\n" +
				`data: {"type":"transcript.text.delta","delta":" gate"}` + "\n\n" +
				`data: {"type":"transcript.text.done","text":"a sluice gate","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":2,"audio_tokens":12},"output_tokens":45,"total_tokens":59}}` + "\n\n",
			`{"text":"a sluice gate","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":2,"audio_tokens":12},"output_tokens":45,"total_tokens":59}}`},
		{"OpenAI with logprobs (include[]=logprobs)",
			`data: {"type":"transcript.text.delta","delta":"Hi","logprobs":[{"token":"Hi","logprob":-0.0125,"bytes":[72,105]}]}` + "\n\n" +
				`data: {"type":"transcript.text.done","text":"Hi","logprobs":[{"token":"Hi","logprob":-0.0125,"bytes":[72,105]}],"usage":{"type":"tokens","input_tokens":9,"output_tokens":1,"total_tokens":10}}` + "\n\n",
			`{"text":"Hi","logprobs":[{"token":"Hi","logprob":-0.0125,"bytes":[72,105]}],"usage":{"type":"tokens","input_tokens":9,"output_tokens":1,"total_tokens":10}}`},
		{"OpenAI with [DONE], done without usage",
			`data: {"type":"transcript.text.done","text":"x"}` + "\n\ndata: [DONE]\n\n", `{"text":"x"}`},
	} {
		got, err := TranscriptToJSON([]byte(tc.stream))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s %v\nwant %s", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ name, stream string }{
		{"vLLM cut before [DONE]", `data: {"object":"transcription.chunk","choices":[{"delta":{"content":"a"}}]}` + "\n\n"},
		{"OpenAI cut before done", `data: {"type":"transcript.text.delta","delta":"a"}` + "\n\n"},
		{"a chat stream", `data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"a"}}]}` + "\n\ndata: [DONE]\n\n"},
		{"both formats", `data: {"type":"transcript.text.delta","delta":"a"}` + "\n\n" + `data: {"object":"transcription.chunk","choices":[]}` + "\n\ndata: [DONE]\n\n"},
		{"an error event", `data: {"object":"transcription.chunk","choices":[]}` + "\n\n" + `data: {"error":{"message":"boom"}}` + "\n\ndata: [DONE]\n\n"},
		{"after done", `data: {"type":"transcript.text.done","text":"x"}` + "\n\n" + `data: {"type":"transcript.text.delta","delta":"y"}` + "\n\n"},
		{"nothing", "data: [DONE]\n\n"},
		{"not JSON", "data: {\n\ndata: [DONE]\n\n"},
	} {
		if got, err := TranscriptToJSON([]byte(tc.stream)); err == nil {
			t.Errorf("%s: %s, want an error", tc.name, got)
		} else if !errors.Is(err, ErrNotConvertible) && !errors.Is(err, ErrStreamIncomplete) {
			t.Errorf("%s: %v, want ErrNotConvertible or ErrStreamIncomplete", tc.name, err)
		}
	}
}

// FuzzTranscriptToJSON: any bytes are read without a panic; an answer is
// one JSON object whose text is a string and whose usage, if any, an
// object; a vLLM stream built of the fuzzed deltas reads back as their
// concatenation.
func FuzzTranscriptToJSON(f *testing.F) {
	f.Add([]byte(`data: {"object":"transcription.chunk","choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}`+"\n\ndata: [DONE]\n\n"), "a", "b")
	f.Add([]byte(`data: {"type":"transcript.text.done","text":"x","usage":{"type":"tokens"}}`+"\n\n"), "\u2028", `"\`)
	f.Fuzz(func(t *testing.T, stream []byte, d1, d2 string) {
		if got, err := TranscriptToJSON(stream); err == nil {
			var out struct {
				Text  *string         `json:"text"`
				Usage json.RawMessage `json:"usage"`
			}
			if json.Unmarshal(got, &out) != nil || out.Text == nil || (out.Usage != nil && !ValidObject(out.Usage)) {
				t.Fatalf("%q -> %s", stream, got)
			}
		}
		if !utf8.ValidString(d1) || !utf8.ValidString(d2) {
			return // JSON strings carry text: invalid bytes are replaced
		}
		var b bytes.Buffer
		for _, d := range []string{d1, d2} {
			ev, _ := json.Marshal(map[string]any{"object": "transcription.chunk", "choices": []any{map[string]any{"delta": map[string]string{"content": d}}}})
			b.WriteString("data: " + string(ev) + "\n\n")
		}
		b.WriteString("data: [DONE]\n\n")
		got, err := TranscriptToJSON(b.Bytes())
		var out struct{ Text string }
		if err != nil || json.Unmarshal(got, &out) != nil || out.Text != d1+d2 {
			t.Fatalf("deltas %q %q: %s %v", d1, d2, got, err)
		}
	})
}

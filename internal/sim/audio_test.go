package sim

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// audioForm builds a multipart body of the fields in order ("file" gets a
// file part) and returns its Content-Type.
func audioForm(t testing.TB, fields ...string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "file" {
			fw, err := w.CreateFormFile("file", "a.mp3")
			if err != nil {
				t.Fatal(err)
			}
			fw.Write([]byte(fields[i+1]))
			continue
		}
		if err := w.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

func postForm(t *testing.T, url, ct string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(url, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, out.Bytes()
}

func TestAudioTranscriptions(t *testing.T) {
	s, url := startSim(t, fastConfig())
	ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", "sim-model", "language", "en")
	before := s.Stats().PromptTokens
	status, _, got := postForm(t, url+"/v1/audio/transcriptions", ct, body)
	answer := decode[struct {
		Text  string         `json:"text"`
		Usage map[string]any `json:"usage"`
	}](t, got)
	text := answer.Text
	if status != 200 || len(strings.Fields(text)) != DefaultOutputTokens {
		t.Fatalf("transcription: %d %s", status, got)
	}
	// vLLM's TranscriptionUsageAudio: 10 tokens at 50 a second, 1 second.
	if u := answer.Usage; len(u) != 2 || u["type"] != "duration" || u["seconds"] != 1.0 {
		t.Fatalf("transcription usage: %s", got)
	}
	if d := s.Stats().PromptTokens - before; d != 10 {
		t.Fatalf("prefilled %d tokens, want 3200/320", d)
	}
	ct, body = audioForm(t, "model", "sim-model", "file", strings.Repeat("x", 3200), "response_format", "text")
	status, hdr, again := postForm(t, url+"/v1/audio/translations", ct, body)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || strings.TrimSpace(string(again)) != text {
		t.Fatalf("text translation: %d %s, want %q", status, again, text)
	}
	for _, c := range []struct {
		fields []string
		status int
		param  string
	}{
		{[]string{"model", "sim-model"}, 400, "file"},
		{[]string{"file", "x", "model", "other"}, 404, ""},
		{[]string{"file", "x", "response_format", "srt"}, 400, "response_format"},
		{[]string{"file", "x", "stream", "maybe"}, 400, "stream"},
		{[]string{"file", "x", "stream", "true", "response_format", "verbose_json"}, 400, "response_format"},
		{[]string{"file", "x", "file", "y"}, 400, "file"},
	} {
		ct, body := audioForm(t, c.fields...)
		status, _, got := postForm(t, url+"/v1/audio/transcriptions", ct, body)
		e := decode[errorBody](t, got)
		if status != c.status || (c.param != "" && (e.Error.Param == nil || *e.Error.Param != c.param)) {
			t.Errorf("%q: %d %s", c.fields, status, got)
		}
	}
	if status, _, got := postForm(t, url+"/v1/audio/transcriptions", "application/json", []byte(`{"model":"sim-model"}`)); status != 400 {
		t.Errorf("JSON body: %d %s", status, got)
	}
}

// TestAudioStream: stream=true answers vLLM's transcription.chunk events
// (with stream_include_usage, a usage chunk) and [DONE]; a gpt-4o model,
// OpenAI's transcript.text.delta events and a final transcript.text.done
// with token usage. Either way the deltas join into the plain answer's
// text.
func TestAudioStream(t *testing.T) {
	_, url := startSim(t, fastConfig())
	ct, body := audioForm(t, "file", strings.Repeat("x", 3200), "model", "sim-model")
	_, _, plain := postForm(t, url+"/v1/audio/transcriptions", ct, body)
	text := decode[struct{ Text string }](t, plain).Text

	ct, body = audioForm(t, "file", strings.Repeat("x", 3200), "model", "sim-model", "stream", "true", "stream_include_usage", "true", "response_format", "text")
	status, hdr, got := postForm(t, url+"/v1/audio/transcriptions", ct, body)
	if status != 200 || hdr.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", status, got)
	}
	events := sseEvents(t, got)
	if len(events) != DefaultOutputTokens+2 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("%d events: %q", len(events), events)
	}
	var joined strings.Builder
	for i, ev := range events[:DefaultOutputTokens] {
		c := decode[struct {
			Object  string
			Choices []struct {
				Delta        struct{ Content string }
				FinishReason *string `json:"finish_reason"`
			}
		}](t, []byte(ev))
		if c.Object != "transcription.chunk" || len(c.Choices) != 1 || (c.Choices[0].FinishReason != nil) != (i == DefaultOutputTokens-1) {
			t.Fatalf("chunk %d: %s", i, ev)
		}
		joined.WriteString(c.Choices[0].Delta.Content)
	}
	if joined.String() != text {
		t.Fatalf("deltas %q, want %q", joined.String(), text)
	}
	u := decode[struct {
		Choices []any
		Usage   usage
	}](t, []byte(events[DefaultOutputTokens]))
	if len(u.Choices) != 0 || u.Usage.PromptTokens != 10 || u.Usage.CompletionTokens != DefaultOutputTokens {
		t.Fatalf("usage chunk: %s", events[DefaultOutputTokens])
	}

	cfg := fastConfig()
	cfg.Model = "gpt-4o-mini-transcribe"
	_, url = startSim(t, cfg)
	ct, body = audioForm(t, "file", strings.Repeat("x", 3200), "model", cfg.Model, "stream", "True")
	status, _, got = postForm(t, url+"/v1/audio/transcriptions", ct, body)
	events = sseEvents(t, got)
	if status != 200 || len(events) != DefaultOutputTokens+1 {
		t.Fatalf("OpenAI stream: %d %q", status, events)
	}
	joined.Reset()
	for _, ev := range events[:DefaultOutputTokens] {
		d := decode[struct{ Type, Delta string }](t, []byte(ev))
		if d.Type != "transcript.text.delta" {
			t.Fatalf("delta: %s", ev)
		}
		joined.WriteString(d.Delta)
	}
	done := decode[struct {
		Type, Text string
		Usage      struct{ Type string }
	}](t, []byte(events[DefaultOutputTokens]))
	if done.Type != "transcript.text.done" || done.Text != joined.String() || done.Usage.Type != "tokens" ||
		!strings.Contains(events[DefaultOutputTokens], `"input_tokens":10,"output_tokens":`) {
		t.Fatalf("done: %s (deltas %q)", events[DefaultOutputTokens], joined.String())
	}
}

// FuzzParseAudioRequest: any body gets a request error or a request with
// a file.
func FuzzParseAudioRequest(f *testing.F) {
	ct, body := audioForm(f, "file", "RIFF", "model", "m", "response_format", "verbose_json")
	f.Add(strings.TrimPrefix(ct, "multipart/form-data; boundary="), body)
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nxyz\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		req, err := parseAudioRequest("multipart/form-data; boundary=\""+strings.ReplaceAll(boundary, `"`, ``)+"\"", body)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a request error", err)
			}
			return
		}
		if req.promptTokens < 1 || req.promptTokens > len(body)/audioBytesPerToken+1 || len(req.model) > maxAudioField {
			t.Fatalf("accepted %+v from %d bytes", req, len(body))
		}
		if req.format != "json" && req.format != "verbose_json" && req.format != "text" {
			t.Fatalf("format %q", req.format)
		}
	})
}

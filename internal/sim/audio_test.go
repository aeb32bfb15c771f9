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
		{[]string{"file", "x", "stream", "true"}, 400, "stream"},
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

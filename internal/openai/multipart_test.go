package openai

import (
	"bytes"
	"errors"
	"mime/multipart"
	"strings"
	"testing"
)

// form builds a multipart/form-data body of the given fields in order
// ("file" gets a file part) and returns its Content-Type.
func form(t testing.TB, fields ...string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		var err error
		if fields[i] == "file" {
			var fw interface{ Write([]byte) (int, error) }
			if fw, err = w.CreateFormFile("file", "a.wav"); err == nil {
				_, err = fw.Write([]byte(fields[i+1]))
			}
		} else {
			err = w.WriteField(fields[i], fields[i+1])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), b.Bytes()
}

func TestParseMultipartRequest(t *testing.T) {
	ct, body := form(t, "file", strings.Repeat("a", 5000), "model", "whisper", "language", "en", "response_format", "verbose_json", "stream", "false")
	p, a, err := ParseMultipartRequest(ct, body)
	if err != nil || p.Model != "whisper" || a.FileBytes != 5000 || p.Stream {
		t.Fatalf("%+v %+v %v", p, a, err)
	}
	if p, _, err := ParseMultipartRequest(ct, body[:len(body)-10]); err == nil {
		t.Fatalf("a cut body accepted: %+v", p)
	}
	for _, c := range []struct {
		fields []string
		param  string
	}{
		{[]string{"model", "w"}, "file"},
		{[]string{"file", "x", "model", "w", "stream", "true", "response_format", "verbose_json"}, "response_format"},
		{[]string{"file", "x", "response_format", "srt", "model", "w", "stream", "1"}, "response_format"},
		{[]string{"file", "x", "model", "w", "response_format", "text"}, "response_format"},
		{[]string{"file", "x", "model", "w", "stream", "maybe"}, "stream"},
		{[]string{"file", "x", "model", "w", "response_format", "srt"}, "response_format"},
		{[]string{"file", "x", "model", "w", "model", "v"}, "model"},
		{[]string{"file", "x", "Model", "w"}, "Model"},
		{[]string{"file", "x", "file", "y", "model", "w"}, "file"},
		{[]string{"file", "x", "model", strings.Repeat("m", maxFieldBytes+1)}, "model"},
	} {
		ct, body := form(t, c.fields...)
		_, _, err := ParseMultipartRequest(ct, body)
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Param != c.param {
			t.Errorf("%q: %v, want a 400 naming %q", c.fields, err, c.param)
		}
	}
	// A stream: "true", "True" or "1", with json, text or no format, in
	// any field order.
	for _, fields := range [][]string{
		{"file", "x", "model", "w", "stream", "true"},
		{"response_format", "text", "file", "x", "model", "w", "stream", "True"},
		{"stream", "1", "file", "x", "model", "w", "response_format", "json"},
	} {
		ct, body := form(t, fields...)
		if p, _, err := ParseMultipartRequest(ct, body); err != nil || !p.Stream {
			t.Errorf("%q: %+v %v, want a stream", fields, p, err)
		}
	}
	for _, ct := range []string{"application/json", "multipart/form-data", "multipart/mixed; boundary=x", ""} {
		_, _, err := ParseMultipartRequest(ct, body)
		var e *Error
		if !errors.As(err, &e) || e.Param != "Content-Type" {
			t.Errorf("Content-Type %q: %v", ct, err)
		}
	}
	if !EndpointTranscriptions.Multipart() || !EndpointTranslations.Multipart() || EndpointRerank.Multipart() ||
		EndpointOf("/v1/audio/transcriptions") != EndpointTranscriptions || EndpointOf("/v1/audio/translations") != EndpointTranslations {
		t.Fatal("the audio endpoints")
	}
	if _, _, err := ParseEndpointRequest(EndpointTranscriptions, []byte(`{"model":"m"}`)); err == nil {
		t.Fatal("a JSON parse of an audio endpoint")
	}
}

// FuzzParseMultipartRequest: any body gets an API error or a peek whose
// model is one of the body's bytes and whose file fits in it.
func FuzzParseMultipartRequest(f *testing.F) {
	ct, body := form(f, "file", "RIFFxxxxWAVE", "model", "whisper-1", "response_format", "json")
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	f.Add(boundary, body)
	_, body2 := form(f, "model", "m", "file", "")
	f.Add(boundary, body2)
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n"))
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n\r\n--b\r\n"))
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		p, a, err := ParseMultipartRequest("multipart/form-data; boundary=\""+strings.ReplaceAll(boundary, `"`, ``)+"\"", body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not an API error: %T %v", err, err)
			}
			return
		}
		if a.FileBytes < 0 || a.FileBytes > len(body) || len(p.Model) > maxFieldBytes || (!bytes.Contains(body, []byte(p.Model)) && !bytes.Contains(bytes.ToLower(body), []byte("quoted-printable"))) {
			t.Fatalf("peek out of the body: %+v %+v", p, a)
		}
		if (p.Stream && !bytes.Contains(body, []byte("stream"))) || p.Deterministic || p.MaxTokens != 0 {
			t.Fatalf("peek %+v", p)
		}
	})
}

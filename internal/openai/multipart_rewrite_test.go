package openai

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// formFields reads a form as the backend will: each part's name, headers
// (as sent, without the transfer encoding Reader removes) and decoded
// content, in order.
func formFields(t *testing.T, ct string, body []byte) []string {
	t.Helper()
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%v in %q", err, body)
		}
		v, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("%v in %q", err, body)
		}
		out = append(out, p.FormName(), p.FileName(), string(v))
	}
}

func TestReplaceFormModel(t *testing.T) {
	file := "RIFF\r\n--\x00\xff" + strings.Repeat("a", 5000)
	ct, body := form(t, "file", file, "model", "whisper", "language", "en")
	out, err := ReplaceFormModel(ct, body, "openai/whisper-large-v3")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(string(body), "\r\n\r\nwhisper\r\n", "\r\n\r\nopenai/whisper-large-v3\r\n", 1); string(out) != want {
		t.Fatalf("got\n%q\nwant every byte but the model's kept\n%q", out, want)
	}
	if len(out) != cap(out) {
		t.Fatalf("len %d cap %d: one allocation of the output's size", len(out), cap(out))
	}
	b := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	for _, c := range []struct{ name, body, want string }{
		{"quoted-printable", "--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nwhis=\r\nper\r\n--" + b + "--\r\n",
			"--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nm=3D1=20x\r\n--" + b + "--\r\n"},
		{"empty, boundary at once", "--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n--" + b + "--\r\n",
			"--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm=1 x\r\n--" + b + "--\r\n"},
		{"LF lines, preamble, no model", "pre\n--" + b + " \nContent-Disposition: form-data; name=\"file\"\n\nx\n--" + b + "--",
			"pre\n--" + b + "\nContent-Disposition: form-data; name=\"model\"\n\nm=1 x\n--" + b + " \nContent-Disposition: form-data; name=\"file\"\n\nx\n--" + b + "--"},
	} {
		out, err := ReplaceFormModel(ct, []byte(c.body), "m=1 x")
		if err != nil || string(out) != c.want {
			t.Errorf("%s: %v\n%q\nwant\n%q", c.name, err, out, c.want)
		}
		if f := formFields(t, ct, out); len(f) < 3 || f[0] != "model" || f[2] != "m=1 x" {
			t.Errorf("%s: read back as %q", c.name, f)
		}
	}
	for _, m := range []string{"a\r\nb", "--" + b + "--"} {
		_, err := ReplaceFormModel(ct, body, m)
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Param != "model" {
			t.Errorf("model %q: %v, want a 400 naming model", m, err)
		}
	}
}

// FuzzReplaceFormModel: any form ParseMultipartRequest accepts, with its
// model replaced, reads back (by mime/multipart, as the backend reads it,
// and by ParseMultipartRequest) as the same parts with the new model.
func FuzzReplaceFormModel(f *testing.F) {
	ct, body := form(f, "file", "RIFF\r\n--xxxxWAVE", "model", "whisper-1", "response_format", "json")
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	f.Add(boundary, body, "openai/whisper-large-v3")
	_, body2 := form(f, "model", "m", "file", "")
	f.Add(boundary, body2, "m")
	f.Add("b", []byte("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\r\n--b--"), "x")
	f.Add("b", []byte("p\r\n--b\t\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n--bX\r\n--b-\r\n--b--\r\n"), "x y")
	f.Add("b", []byte("--b\nContent-Disposition: form-data; name*=utf-8''model\nContent-Transfer-Encoding: Quoted-Printable\n\na=3D\n--b\nContent-Disposition: form-data; name=file\n\n\n--b--\n"), "=\x00")
	f.Fuzz(func(t *testing.T, boundary string, body []byte, model string) {
		if len(model) > maxFieldBytes/3 {
			return
		}
		ct := "multipart/form-data; boundary=\"" + strings.ReplaceAll(boundary, `"`, ``) + "\""
		p, a, err := ParseMultipartRequest(ct, body)
		if err != nil {
			return
		}
		out, err := ReplaceFormModel(ct, body, model)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Param != "model" {
				t.Fatalf("error is not a 400 naming model: %v", err)
			}
			if !strings.ContainsAny(model, "\r\n") && !strings.HasPrefix(model, "--") {
				t.Fatalf("a form ParseMultipartRequest accepts was not rewritten: %v", err)
			}
			return
		}
		if len(out) != cap(out) {
			t.Fatalf("len %d cap %d", len(out), cap(out))
		}
		p2, a2, err := ParseMultipartRequest(ct, out)
		if err != nil || p2.Model != model || a2 != a || p2.Stream != p.Stream {
			t.Fatalf("read back as %+v %+v %v, want model %q and %+v\n%q", p2, a2, err, model, a, out)
		}
		before, after := formFields(t, ct, body), formFields(t, ct, out)
		if p.Model == "" && !hasModelPart(before) {
			after = after[3:] // the part added, first
		}
		if len(before) != len(after) {
			t.Fatalf("parts %q, then %q", before, after)
		}
		for i := 0; i < len(before); i += 3 {
			if before[i] == "model" {
				after[i+2] = before[i+2]
			}
			if before[i] != after[i] || before[i+1] != after[i+1] || before[i+2] != after[i+2] {
				t.Fatalf("part %d: %q, then %q", i/3, before[i:i+3], after[i:i+3])
			}
		}
	})
}

func hasModelPart(fields []string) bool {
	for i := 0; i < len(fields); i += 3 {
		if fields[i] == "model" {
			return true
		}
	}
	return false
}

// BenchmarkReplaceFormModel: a 1 MB file before the model part, as the
// SDKs send it (file first).
func BenchmarkReplaceFormModel(b *testing.B) {
	ct, body := form(b, "file", strings.Repeat("a", 1<<20), "model", "whisper", "language", "en", "response_format", "json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReplaceFormModel(ct, body, "openai/whisper-large-v3"); err != nil {
			b.Fatal(err)
		}
	}
}

package openai

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// splitAt cuts body into chunks whose lengths are cuts' bytes (+1), the
// rest in the last one: the blocks a body may have been read into.
func splitAt(body []byte, cuts []byte) [][]byte {
	var chunks [][]byte
	for _, c := range cuts {
		n := min(int(c)+1, len(body))
		chunks = append(chunks, body[:n:n])
		body = body[n:]
	}
	return append(chunks, body)
}

// FuzzFormChunks: a form parsed and rewritten as chunks, however cut,
// reads as the same form whole: the same peek or error, the same
// rewritten bytes, and the chunks left as they were.
func FuzzFormChunks(f *testing.F) {
	ct, body := form(f, "file", "RIFF\r\n--xxxxWAVE", "model", "whisper-1", "response_format", "json")
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	f.Add(boundary, body, "openai/whisper-large-v3", []byte{3, 40, 0, 7})
	_, body2 := form(f, "model", "m", "file", "")
	f.Add(boundary, body2, "m", []byte{60, 1})
	f.Add("b", []byte("--b\nContent-Disposition: form-data; name*=utf-8''model\nContent-Transfer-Encoding: Quoted-Printable\n\na=3D\n--b\nContent-Disposition: form-data; name=file\n\n\n--b--\n"), "=\x00", []byte{0, 0, 2, 5, 9})
	f.Fuzz(func(t *testing.T, boundary string, body []byte, model string, cuts []byte) {
		if len(model) > maxFieldBytes/3 {
			return
		}
		ct := "multipart/form-data; boundary=\"" + strings.ReplaceAll(boundary, `"`, ``) + "\""
		chunks := splitAt(body, cuts)
		orig := append([]byte(nil), body...)
		p, a, err := ParseMultipartRequest(ct, body)
		pc, ac, errc := ParseMultipartChunks(ct, chunks)
		if p != pc || a != ac || (err == nil) != (errc == nil) || (err != nil && err.Error() != errc.Error()) {
			t.Fatalf("whole: %+v %+v %v; in %d chunks: %+v %+v %v", p, a, err, len(chunks), pc, ac, errc)
		}
		if err != nil {
			return
		}
		out, err := ReplaceFormModel(ct, body, model)
		segs, errc := ReplaceFormModelChunks(ct, chunks, model)
		if (err == nil) != (errc == nil) || (err == nil && !bytes.Equal(out, JoinChunks(segs))) {
			t.Fatalf("rewritten whole: %q %v; in chunks: %q %v", out, err, JoinChunks(segs), errc)
		}
		if !bytes.Equal(JoinChunks(chunks), orig) {
			t.Fatal("the chunks changed")
		}
	})
}

// index finds a pattern across a seam, and the first of two.
func TestChunkTextIndex(t *testing.T) {
	txt := newChunkText([][]byte{[]byte("ab\r\n-"), nil, []byte("-b"), []byte("xx\r\n--b")})
	if i := txt.index(0, []byte("\r\n--b")); i != 2 {
		t.Fatalf("index = %d, want 2 (across three chunks)", i)
	}
	if i := txt.index(3, []byte("\r\n--b")); i != 9 {
		t.Fatalf("index from 3 = %d, want 9", i)
	}
	if i := txt.indexByte(5, '\n'); i != 10 {
		t.Fatalf("indexByte = %d, want 10", i)
	}
	if s := string(txt.slice(1, 8)); s != "b\r\n--bx" {
		t.Fatalf("slice = %q", s)
	}
}

// ChunkReader reads and writes the chunks in order, whole.
func TestChunkReader(t *testing.T) {
	chunks := [][]byte{[]byte("head-"), nil, []byte("mid"), []byte("-tail")}
	got, err := io.ReadAll(NewChunkReader(chunks))
	if err != nil || string(got) != "head-mid-tail" {
		t.Fatalf("Read: %q %v", got, err)
	}
	var w bytes.Buffer
	var r ChunkReader
	r.Reset(chunks)
	var p [3]byte
	if n, _ := r.Read(p[:]); n != 3 {
		t.Fatal(n)
	}
	if n, err := r.WriteTo(&w); err != nil || n != 10 || w.String() != "d-mid-tail" {
		t.Fatalf("WriteTo after a Read: %d %q %v", n, w.String(), err)
	}
}

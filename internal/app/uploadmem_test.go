package app

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Uploads to POST /v1/files validate each line in a buffer of up to
// 8 MiB, which was not counted in server.max_body_memory: N slow uploads
// with long lines held N such buffers whatever the bound. They now draw
// from the same budget as the inference bodies: with a 12 MiB budget,
// ten uploads each sending 3 MiB of one line (and waiting) hold at most
// the budget, the gauge shows it, and those that do not fit are told 503
// body_memory_full with Retry-After. The heap is measured once every
// upload has either been answered or had its bytes read by the gateway
// (its spool file holds all it sent).
func TestUploadLinesDrawFromTheBodyBudget(t *testing.T) {
	spoolDir := t.TempDir()
	t.Setenv("TMPDIR", spoolDir) // os.TempDir: where uploads are spooled
	be, _ := countingBackend(t)
	const (
		budget  = 12 << 20
		uploads = 10
		lineLen = 3 << 20
	)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nmax_body_bytes: 1MiB\nmax_audio_body_bytes: 1MiB\n"+
		"server: {max_body_memory: %d}\nqueue: {data_dir: %s, workers: 0, worker_disabled: true}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n", budget, t.TempDir(), be.URL))
	url, admin := serveApp(t, newApp(t, path))
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()

	head := `{"custom_id":"`
	sent := int64(len(head) + lineLen) // the file part's bytes each upload sends, then waits
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	type answer struct {
		status int
		hdr    http.Header
		body   []byte
	}
	answers := make(chan answer, uploads)
	var writers []*io.PipeWriter
	var wg sync.WaitGroup
	defer wg.Wait()
	for range uploads {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		mw := multipart.NewWriter(pw)
		wg.Add(2)
		go func() { // owned: ends when the pipe is closed or the gateway stops reading
			defer wg.Done()
			mw.WriteField("purpose", "batch")
			fw, err := mw.CreateFormFile("file", "in.jsonl")
			if err != nil {
				return
			}
			if _, err := io.WriteString(fw, head); err != nil {
				return
			}
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for range lineLen / len(chunk) {
				if _, err := fw.Write(chunk); err != nil {
					return
				}
			}
		}()
		req, err := http.NewRequest(http.MethodPost, url+"/v1/files", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		go func() { // owned: ends with the request
			defer wg.Done()
			resp, err := tr.RoundTrip(req)
			if err != nil {
				answers <- answer{}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			pr.CloseWithError(io.ErrClosedPipe) // the writer stops
			answers <- answer{resp.StatusCode, resp.Header, b}
		}()
	}
	defer func() {
		for _, pw := range writers {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
	}()

	var got []answer
	full := func() int { // uploads whose bytes the gateway has all read
		n := 0
		paths, _ := filepath.Glob(filepath.Join(spoolDir, "sluice-upload-*.jsonl"))
		for _, p := range paths {
			if fi, err := os.Stat(p); err == nil && fi.Size() >= sent {
				n++
			}
		}
		return n
	}
	eventually(t, "every upload answered or read to its last byte", func() bool {
		for len(answers) > 0 {
			got = append(got, <-answers)
		}
		return len(got)+full() >= uploads
	})
	grew := heap() - before
	held := metricValue(t, admin, "sluice_request_body_bytes")
	refused := 0
	for _, a := range got {
		if a.status != http.StatusServiceUnavailable || !bytes.Contains(a.body, []byte(`"code":"body_memory_full"`)) ||
			a.hdr.Get("Retry-After") == "" || !bytes.Contains(a.body, []byte(`"type":"server_error"`)) {
			t.Errorf("an upload was answered %d %v %s; want 503 body_memory_full with Retry-After", a.status, a.hdr, a.body)
		}
		refused++
	}
	t.Logf("heap grew %d MiB with %d uploads holding %d MiB lines (%d refused, %d held); sluice_request_body_bytes %.0f",
		grew>>20, uploads, lineLen>>20, refused, uploads-refused, held)
	if refused == 0 {
		t.Errorf("no upload refused: %d uploads of %d MiB lines fit in a %d MiB budget", uploads, lineLen>>20, budget>>20)
	}
	if held <= 0 || held > budget {
		t.Errorf("sluice_request_body_bytes %.0f; want the uploads' line buffers, within the budget %d", held, budget)
	}
	// The budget, and the connections' and spools' own buffers.
	if slack := int64(4 << 20); grew > budget+slack {
		t.Errorf("heap grew %d MiB; want at most the %d MiB budget (+%d MiB)", grew>>20, budget>>20, slack>>20)
	}
	if l := metric(t, admin, `sluice_request_body_refused_total{reason="memory"} `); l != fmt.Sprintf(`sluice_request_body_refused_total{reason="memory"} %d`, refused) {
		t.Errorf("refusals: %q; want %d", l, refused)
	}
}

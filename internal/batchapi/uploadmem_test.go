package batchapi_test

import (
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// An upload's duplicate check keeps a fixed-size key per custom_id, not
// the id: a file of long ids (OpenAI sets no length limit) held its whole
// size in memory while it was validated, outside the gateway's body
// budget, once per concurrent upload. The heap is measured while the
// upload streams through the real handler, past most of its lines.
func TestUploadDoesNotHoldItsCustomIDs(t *testing.T) {
	e := newEnv(t, envOptions{})
	const (
		lines   = 200
		idBytes = 128 << 10 // 25 MiB of ids in all
		measure = lines - 10
	)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	grew := make(chan int64, 1)
	go func() { // owned: ends when the file is written or the pipe closed
		before := heap()
		mw.WriteField("purpose", "batch")
		w, err := mw.CreateFormFile("file", "batch_input.jsonl")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		pad := strings.Repeat("x", idBytes)
		for i := range lines {
			if i == measure {
				// The pipe is unbuffered: the handler has read all but
				// the last few buffered lines written so far.
				grew <- int64(heap()) - int64(before)
			}
			if _, err := io.WriteString(w, chatLine(pad+strconv.Itoa(i), "m1")+"\n"); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	r := e.do(e.tenant, http.MethodPost, "/v1/files", mw.FormDataContentType(), pr)
	pr.Close()
	if r.status != http.StatusOK {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	g := <-grew
	// The ids read so far are ~24 MiB; what an upload must hold is a
	// line (128 KiB here) and its read buffers.
	if limit := int64(8 << 20); g > limit {
		t.Fatalf("heap grew by %d MiB while %d lines of %d KiB ids were validated; want < %d MiB (the ids are not kept)",
			g>>20, measure, idBytes>>10, limit>>20)
	}
	t.Logf("heap grew by %d KiB over %d lines", g>>10, measure)
}

package batchapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The object store's names, as nats.go lays them out and jobs names its
// bucket: a file's content is the messages on its copy's chunk subject.
const (
	filesBucket = "sluice_files"
	filesStream = "OBJ_" + filesBucket
)

// damageLastChunk harms the stored content of file id in the embedded
// server, as a lost or corrupted disk block would: its last chunk is
// deleted and, if alter, put back with one byte flipped (at the end of
// the subject, so still the last).
func (e *env) damageLastChunk(id string, alter bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(e.nats)
	if err != nil {
		e.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, filesBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := js.Stream(ctx, filesStream)
	if err != nil {
		e.t.Fatal(err)
	}
	subject := "$O." + filesBucket + ".C." + info.NUID
	last, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, last.Sequence); err != nil {
		e.t.Fatal(err)
	}
	if alter {
		data := append([]byte(nil), last.Data...)
		data[len(data)/2] ^= 1
		if _, err := js.Publish(ctx, subject, data); err != nil {
			e.t.Fatal(err)
		}
	}
}

// bigChatFile is an input file of n lines, ~130 bytes each.
func bigChatFile(n int) []byte {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("line-%06d", i)
	}
	return chatFile(ids...)
}

// A stored file of one chunk (128 KiB, most batch outputs) whose chunk is
// altered or missing is a 500 OpenAI error carrying the request id, found
// before the status is sent; before, a 200 with its Content-Length and no
// body.
func TestFileContentDamagedIsAnErrorBeforeTheStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alter bool
	}{{"altered", true}, {"missing", false}} {
		t.Run(tc.name, func(t *testing.T) {
			// A missing chunk is waited for FileReadIdle; 1s here.
			e := newEnv(t, envOptions{fileReadIdle: time.Second})
			content := chatFile("a", "b", "c")
			f := e.uploadOK(content)
			if r := e.get("/v1/files/" + f.ID + "/content"); r.status != http.StatusOK || string(r.body) != string(content) {
				t.Fatalf("before the damage: %d %q", r.status, r.body)
			}
			e.damageLastChunk(f.ID, tc.alter)
			r := e.get("/v1/files/" + f.ID + "/content")
			ae := r.wantError(t, http.StatusInternalServerError)
			if ae.Error.Type != "server_error" || ae.Error.Code == nil || *ae.Error.Code != "file_unreadable" ||
				!strings.Contains(ae.Error.Message, testRequestID) {
				t.Fatalf("error %s; want server_error file_unreadable naming the request id", r.body)
			}
			if strings.Contains(string(r.body), "jobs:") || strings.Contains(string(r.body), "SHA-256") {
				t.Fatalf("the answer carries the store's detail: %s", r.body)
			}
		})
	}
}

// A damaged chunk after the first is found once the status is sent: the
// handler aborts the response (http.ErrAbortHandler, which net/http turns
// into a closed connection or a reset HTTP/2 stream), never returns as if
// the short body were the file. Before, it returned: over HTTP/2 the
// stream ended cleanly, short of its Content-Length.
func TestFileContentDamagedAfterTheStatusIsCut(t *testing.T) {
	e := newEnv(t, envOptions{})
	content := bigChatFile(3000) // 3 chunks
	if len(content) <= 2*128<<10 {
		t.Fatalf("content of %d bytes is not 3 chunks", len(content))
	}
	f := e.uploadOK(content)
	e.damageLastChunk(f.ID, true)

	req := httptest.NewRequest(http.MethodGet, "/v1/files/"+f.ID+"/content", nil)
	rec := httptest.NewRecorder()
	recovered := func() (v any) {
		defer func() { v = recover() }()
		e.h.Serve(rec, req, e.tenant)
		return nil
	}()
	if recovered != http.ErrAbortHandler {
		t.Fatalf("handler ended with %v after %d of %d bytes (status %d); want it to abort with http.ErrAbortHandler",
			recovered, rec.Body.Len(), len(content), rec.Code)
	}
	if rec.Code != http.StatusOK || rec.Body.Len() == 0 || rec.Body.Len() >= len(content) {
		t.Fatalf("status %d, %d of %d bytes; want 200 and a part sent before the cut", rec.Code, rec.Body.Len(), len(content))
	}

	// Through a real server, the client's read of the body fails.
	hreq, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/files/"+f.ID+"/content", nil)
	hreq.Header.Set("Authorization", "Bearer "+e.tenant)
	resp, err := e.srv.Client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= int64(len(content)) {
		t.Fatalf("client read %d of %d bytes, %v; want a failed read", n, len(content), err)
	}
}

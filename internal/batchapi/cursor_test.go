package batchapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// A list's after= that names nothing answers an empty page, on both lists
// alike (files answered 404, batches a page): OpenAI's spec gives its list
// operations no answer but 200.
func TestListCursorNamingNothingIsAnEmptyPage(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.uploadOK(chatFile("a"))
	e.createBatchOK(chatFile("b"), nil)
	for _, path := range []string{
		"/v1/files?after=garbage", "/v1/files?after=..%2Fx", "/v1/files?after=file-000000000000000000000000",
		"/v1/batches?after=..%2Fx", "/v1/batches?after=batch_unknown", "/v1/batches?after=zzz",
	} {
		r := e.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		var page struct {
			Object  string            `json:"object"`
			Data    []json.RawMessage `json:"data"`
			FirstID *string           `json:"first_id"`
			HasMore bool              `json:"has_more"`
		}
		r.json(t, &page)
		if page.Object != "list" || page.Data == nil || len(page.Data) != 0 || page.FirstID != nil || page.HasMore {
			t.Errorf("GET %s: %s, want an empty list", path, r.body)
		}
	}
}

// A file deleted between two pages still marks its place: the next page
// continues after it, in either order (it was a 404, and a client paging
// while files went away could not go on).
func TestFileCursorOfDeletedFileContinues(t *testing.T) {
	e := newEnv(t, envOptions{})
	var ids []string
	for range 3 {
		ids = append(ids, e.uploadOK(chatFile("a")).ID)
		e.clock.Advance(time.Second)
	}
	if r := e.do(e.tenant, http.MethodDelete, "/v1/files/"+ids[1], "", nil); r.status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		order string
		want  []string
	}{{"desc", ids[:1]}, {"asc", ids[2:]}} {
		r := e.get("/v1/files?order=" + tc.order + "&after=" + ids[1])
		if r.status != http.StatusOK {
			t.Fatalf("order=%s after a deleted file: %d %s", tc.order, r.status, r.body)
		}
		var page struct{ Data []jobs.File }
		r.json(t, &page)
		var got []string
		for _, f := range page.Data {
			got = append(got, f.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("order=%s after %s: %v, want %v", tc.order, ids[1], got, tc.want)
		}
	}
}

package main

import (
	"net/http"
	"strings"
	"testing"
)

// The sink's judgement: every ended batch at /all once, the scoped
// tenant's at /scoped, another tenant's there a failure.
func TestBatchHookSinkJudgesEndpointsByTenant(t *testing.T) {
	h, err := newBatchHookSink(mixTenant(0))
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	post := func(path, id string) {
		t.Helper()
		resp, err := http.Post(h.url+path, "application/json", strings.NewReader(`{"object":"event","type":"batch.completed","data":{"id":"`+id+`"}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	h.end("batch_a", mixTenant(0))
	h.end("batch_b", mixTenant(1))
	post("/all", "batch_a")
	post("/all", "batch_a")
	post("/all", "batch_b")
	post("/scoped", "batch_a")
	all, scoped, leaked := h.counts()
	if all != (batchHookCounts{expected: 2, dup: 1}) || scoped != (batchHookCounts{expected: 1}) || leaked != 0 {
		t.Fatalf("all %+v, scoped %+v, leaked %d", all, scoped, leaked)
	}
	var out strings.Builder
	if !h.report(&out) {
		t.Fatalf("a duplicate failed the run: %s", out.String())
	}
	post("/scoped", "batch_b")
	h.end("batch_c", mixTenant(0))
	all, scoped, leaked = h.counts()
	if all.lost != 1 || scoped.lost != 1 || leaked != 1 {
		t.Fatalf("all %+v, scoped %+v, leaked %d", all, scoped, leaked)
	}
	if h.report(&out) {
		t.Fatalf("a lost event and another tenant's passed: %s", out.String())
	}
	if y := h.yaml(); !strings.Contains(y, `tenants: ["ip:127.0.0.10"]`) {
		t.Fatalf("config: %s", y)
	}
}

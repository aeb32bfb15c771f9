package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
)

// TestReadyzSaysJobStoreFailing: while the embedded job store's disk
// refuses writes /readyz says "jobs_store":"failing" and stays 200 (live
// traffic does not need the store); once it writes, the field is gone.
func TestReadyzSaysJobStoreFailing(t *testing.T) {
	live := newOKBackend(t)
	srv, gw := startGateway(t, testConfig(live.URL))
	var failing atomic.Bool
	failing.Store(true)
	gw.SetJobStoreFault(func() error {
		if failing.Load() {
			return errors.New("job store cannot write to its disk")
		}
		return nil
	})
	read := func() (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(readAll(t, resp)), &doc); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, doc
	}
	if code, doc := read(); code != http.StatusOK || doc["ready"] != true || doc["jobs_store"] != "failing" {
		t.Fatalf("/readyz with the store failing = %d %v; want 200, ready, jobs_store failing", code, doc)
	}
	failing.Store(false)
	if code, doc := read(); code != http.StatusOK || doc["jobs_store"] != nil {
		t.Fatalf("/readyz with the store writing = %d %v; want 200, no jobs_store", code, doc)
	}
}

package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// A reload turning admission.enabled off lets the requests its queue
// held through at once, as the requests arriving after it are. Before,
// they were granted only as the old queue's tickets came back: behind a
// request holding the one slot, two queued requests reached the backend
// only once it ended (measured through the binary: a 6 s backend, the
// reload 1.4 s in, both queued ones done at 12.0 s; after, 7.4 s).
func TestAdmissionOffReleasesTheQueued(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/v1/chat/completions" {
			return
		}
		if arrived.Add(1) == 1 {
			<-release // the first holds the one slot until the test ends
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
	}))
	defer be.Close()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(enabled bool) {
		src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+
			"admission: {enabled: %v, max_wait: 10m, adaptive: {initial: 1, min: 1, max: 1}}\n"+
			"models:\n  - name: m1\n    backends:\n      - url: %s\n", enabled, be.URL)
		writeFile(t, path, src)
	}
	write(true)
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	defer close(release) // before the servers close: the first request ends
	codes := make(chan int, 3)
	send := func() {
		code, _ := chat(srv.URL, "m1")
		codes <- code
	}
	go send()
	eventually(t, "the first request at the backend", func() bool { return arrived.Load() == 1 })
	go send()
	go send()
	q := a.gw.Runtime().Queues()["m1"]
	eventually(t, "two requests queued", func() bool { return q.Stats().Queued == 2 })
	write(false)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	// Both through while the first still holds its slot.
	for range 2 {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("a request queued before admission was turned off: %d, want 200", code)
		}
	}
	if n := arrived.Load(); n != 3 {
		t.Fatalf("%d requests reached the backend, want 3", n)
	}
}

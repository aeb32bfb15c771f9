package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// heldBackend is a one-slot backend the test releases request by request:
// each chat request's id (its message) is sent on arrived when it comes
// in, and it is answered when release gives it a turn.
type heldBackend struct {
	srv     *httptest.Server
	arrived chan string
	release chan struct{}
	stop    chan struct{} // closed: every held request is answered
}

var idInBody = regexp.MustCompile(`"content":"([^"]*)"`)

func newHeldBackend(t *testing.T) *heldBackend {
	h := &heldBackend{arrived: make(chan string, 16), release: make(chan struct{}), stop: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/chat/completions" {
			return
		}
		var id string
		if m := idInBody.FindSubmatch(body); m != nil {
			id = string(m[1])
		}
		h.arrived <- id
		select {
		case <-h.release:
		case <-h.stop:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}]}`, id)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// next is the id of the next request to reach the backend.
func (h *heldBackend) next(t *testing.T) string {
	t.Helper()
	select {
	case id := <-h.arrived:
		return id
	case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("no request reached the backend")
		return ""
	}
}

// A reload that changes admission.* hands the running queue over with
// its settings changed: requests queued before it keep their place ahead
// of later arrivals, and its bounds count them and the request in
// service. Before, the reload built a new queue beside the old one: its
// stats read 0 in use and 0 queued with one request in service and two
// waiting, it let later arrivals through at once (ahead of the waiters,
// which then lost the race for the backend's slot: binary, 503 after 8.4
// to 8.9 s queued) and a lowered max_queued counted none of them.
func TestReloadOfAdmissionKeepsTheQueue(t *testing.T) {
	be := newHeldBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(maxQueued int) {
		src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\nforecast: {enabled: false}\n"+
			"health: {max_fails: 0, active: {interval: 0s}}\nbreaker: {enabled: false}\nretry: {attempts: 1}\n"+
			"admission: {max_wait: 10m, max_queued: %d, size_aware: false}\n"+
			"models:\n  - name: m\n    backends:\n      - {url: %s, max_concurrency: 1}\n", maxQueued, be.srv.URL)
		writeFile(t, path, src)
	}
	write(100)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newWithClock(cfg, Source{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	defer close(be.stop) // first: a failed test leaves no request held

	type answer struct {
		id     string
		status int
		body   string
	}
	answers := make(chan answer, 8)
	send := func(id string) {
		go func() {
			resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"`+id+`"}]}`))
			if err != nil {
				answers <- answer{id: id, body: err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{id: id, status: resp.StatusCode, body: string(b)}
		}()
	}
	stats := func() (inUse, queued int) {
		s := a.gw.Runtime().Queues()["m"].Stats()
		return s.InUse, s.Queued
	}
	queuedIs := func(n int) func() bool {
		return func() bool { _, q := stats(); return q == n }
	}

	send("a")
	if id := be.next(t); id != "a" {
		t.Fatalf("first at the backend: %q", id)
	}
	send("b")
	eventually(t, "b queued", queuedIs(1))
	send("c")
	eventually(t, "c queued", queuedIs(2))

	write(3) // admission.max_queued: 100 -> 3
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if inUse, queued := stats(); inUse != 1 || queued != 2 {
		t.Fatalf("after the reload the queue counts %d in service and %d waiting; want 1 and 2", inUse, queued)
	}
	send("d")
	eventually(t, "d queued behind b and c", queuedIs(3))
	send("e") // the bound (max_queued_per_tenant follows it) counts b, c and d
	if got := <-answers; got.id != "e" || got.status != http.StatusTooManyRequests || !strings.Contains(got.body, "tenant_queue_full") {
		t.Fatalf("the arrival past max_queued 3: %+v; want e refused 429 tenant_queue_full", got)
	}

	for _, want := range []string{"b", "c", "d"} {
		be.release <- struct{}{} // the one in service ends
		if id := be.next(t); id != want {
			t.Fatalf("the backend's next request is %q; want %q (queued before it)", id, want)
		}
	}
	be.release <- struct{}{}
	for range 4 {
		if got := <-answers; got.status != http.StatusOK {
			t.Fatalf("%s answered %d %s", got.id, got.status, got.body)
		}
	}
}

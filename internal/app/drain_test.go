package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// slowSim is a simulated backend whose answers take minutes (a token
// every 20 ms, thousands asked): whatever is in flight at shutdown is
// still running when the drain ends.
func slowSim(t *testing.T) *httptest.Server {
	t.Helper()
	s := sim.New(sim.Config{Model: "m", DecodeStepBase: 20 * time.Millisecond})
	t.Cleanup(s.Close)
	be := httptest.NewServer(s)
	t.Cleanup(be.Close)
	return be
}

// drainApp builds a gateway in front of be with the given shutdown_grace,
// no job queue and no access log.
func drainApp(t *testing.T, be, grace string) *App {
	return drainAppLimit(t, be, grace, 0)
}

// drainAppLimit is drainApp with the backend's max_concurrency (0: none).
// Its cut gives the requests still running a minute to answer, a hang
// guard, not cutBound's 2 s of wall clock: under load a cancelled
// handler missed those 2 s and its client saw EOF where the tests want
// its 503 (RELIABILITY, flakes12 and "drain cut's wall clock").
func drainAppLimit(t *testing.T, be, grace string, limit int) *App {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, path, fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"shutdown_grace: %s\nlog: {access: false}\nqueue: {enabled: false}\n"+
		"models:\n  - name: m\n    backends:\n      - url: %s\n        max_concurrency: %d\n", grace, be, limit))
	a := newApp(t, path)
	a.cutWait = time.Minute
	return a
}

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// longRequest sends a chat completion that runs for minutes; its answer
// comes on the channel. stream: the channel gets the head first (body
// nil), then the whole stream as it ended.
func longRequest(url string, stream bool, hdr ...string) <-chan answer {
	out := make(chan answer, 2)
	go func() {
		body := fmt.Sprintf(`{"model":"m","max_tokens":5000,"stream":%t,"messages":[{"role":"user","content":"hi"}]}`, stream)
		req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			out <- answer{err: err}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		if stream {
			// The first event: the stream is committed and running.
			r := bufio.NewReader(resp.Body)
			line, err := r.ReadBytes('\n')
			if err != nil {
				out <- answer{err: err}
				return
			}
			b.Write(line)
			out <- answer{status: resp.StatusCode, header: resp.Header}
			_, err = io.Copy(&b, r)
			out <- answer{status: resp.StatusCode, header: resp.Header, body: b.Bytes(), err: err}
			return
		}
		_, err = io.Copy(&b, resp.Body)
		out <- answer{status: resp.StatusCode, header: resp.Header, body: b.Bytes(), err: err}
	}()
	return out
}

// getStatus decodes the running gateway's /status, read over its admin
// listener, into st.
func getStatus(t *testing.T, admin string, st any) {
	t.Helper()
	resp, err := http.Get(admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(st); err != nil {
		t.Fatal(err)
	}
}

// inFlight is the gateway's count of requests on its backends (/status).
func inFlight(t *testing.T, admin string) int {
	t.Helper()
	var st struct {
		Models []struct {
			Backends []struct{ Inflight int }
		}
	}
	getStatus(t, admin, &st)
	n := 0
	for _, m := range st.Models {
		for _, b := range m.Backends {
			n += b.Inflight
		}
	}
	return n
}

// wantShuttingDown checks a non-stream answer cut by the end of the
// drain: 503 shutting_down in the OpenAI shape, Retry-After, and the
// connection closed after it.
func wantShuttingDown(t *testing.T, a answer) {
	t.Helper()
	if a.err != nil {
		t.Fatalf("the client got no answer: %v", a.err)
	}
	var e struct{ Error struct{ Code, Type string } }
	if a.status != http.StatusServiceUnavailable || json.Unmarshal(a.body, &e) != nil || e.Error.Code != "shutting_down" || e.Error.Type != "server_error" {
		t.Fatalf("got %d %s, want 503 shutting_down", a.status, a.body)
	}
	if a.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", a.header)
	}
}

// When shutdown_grace ends with requests still running, each client is
// told: a non-stream request gets 503 shutting_down with Retry-After, a
// committed stream ends with an in-band error event. Before, the
// connections were closed under them: an empty reply, and a stream cut
// without [DONE] or an error, both alike to a crash.
func TestDrainEndAnswersTheRequestsStillRunning(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	be := slowSim(t)
	url, admin, cancel, done := runApp(t, drainApp(t, be.URL, "200ms"))
	defer cancel()
	plain := longRequest(url, false)
	stream := longRequest(url, true)
	if head := <-stream; head.err != nil || head.status != 200 {
		t.Fatalf("stream head: %d %v", head.status, head.err)
	}
	eventually(t, "both requests on the backend", func() bool { return inFlight(t, admin) == 2 })

	cancel() // SIGTERM
	wantShuttingDown(t, <-plain)
	s := <-stream
	if s.err != nil {
		t.Fatalf("stream cut: %v (%q)", s.err, s.body)
	}
	events := strings.Split(strings.TrimSpace(string(s.body)), "\n\n")
	last := events[len(events)-1]
	if !strings.HasPrefix(last, "data: {\"error\"") || !strings.Contains(last, `"code":"shutting_down"`) {
		t.Fatalf("stream's last event %q, want an error event with code shutting_down", last)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Cut (a second SIGTERM or SIGINT) ends the drain at once: a request
// that would run for minutes, under a grace of an hour, is answered 503
// shutting_down and Run returns.
func TestCutEndsTheDrainAtOnce(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	be := slowSim(t)
	a := drainApp(t, be.URL, "1h")
	url, admin, cancel, done := runApp(t, a)
	defer cancel()
	plain := longRequest(url, false)
	eventually(t, "the request on the backend", func() bool { return inFlight(t, admin) == 1 })

	cancel() // the first signal: the drain starts, the listener closes
	eventually(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	a.Cut() // the second
	wantShuttingDown(t, <-plain)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// queued is the number of requests waiting in the model's admission
// queue (/status).
func queued(t *testing.T, admin string) int {
	t.Helper()
	var st struct {
		Models []struct{ Queue struct{ Queued int } }
	}
	getStatus(t, admin, &st)
	n := 0
	for _, m := range st.Models {
		n += m.Queue.Queued
	}
	return n
}

// A request still waiting in the admission queue when the drain ends (a
// batch-class one: its max_wait is 5 minutes) is answered 503
// shutting_down with the one on the backend, not left to the close of
// its connection as before (EOF).
func TestDrainEndAnswersTheQueuedRequests(t *testing.T) {
	checkNoGoroutineLeftAtEnd(t)
	be := slowSim(t)
	url, admin, cancel, done := runApp(t, drainAppLimit(t, be.URL, "200ms", 1))
	defer cancel()
	running := longRequest(url, false)
	eventually(t, "the first request on the backend", func() bool { return inFlight(t, admin) == 1 })
	waiting := longRequest(url, false, "X-Sluice-Priority", "batch")
	eventually(t, "the second request in the queue", func() bool { return queued(t, admin) == 1 })

	cancel() // SIGTERM
	wantShuttingDown(t, <-running)
	wantShuttingDown(t, <-waiting)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

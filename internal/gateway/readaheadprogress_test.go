package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// bigStreamBackend streams events (about 1 KiB each) up to size bytes,
// then [DONE]; a request whose body contains "hold" waits for release,
// then answers one short event (under the read-ahead's direct first 64
// KiB, so it is never read ahead nor counted detached: the detached
// counter counts the big answers alone). ended gets, per request, whether
// the gateway cancelled it.
type bigStreamBackend struct {
	release chan struct{}
	arrived chan struct{}
	ended   chan bool
	body    []byte
	short   []byte
	events  int
}

func newBigStreamBackend(t *testing.T, size int) (*bigStreamBackend, string) {
	b := &bigStreamBackend{release: make(chan struct{}), arrived: make(chan struct{}, 16), ended: make(chan bool, 16)}
	pad := strings.Repeat("s", 1<<10)
	var sb strings.Builder
	for sb.Len() < size {
		sb.WriteString(`data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + pad + `"}}]}` + "\n\n")
		b.events++
	}
	sb.WriteString("data: [DONE]\n\n")
	b.body = []byte(sb.String())
	b.short = []byte(`data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"held"}}]}` + "\n\n" + "data: [DONE]\n\n")
	url := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.arrived <- struct{}{}
		cancelled := false
		defer func() { b.ended <- cancelled }()
		answer := b.body
		if strings.Contains(string(body), "hold") {
			select {
			case <-b.release:
			case <-r.Context().Done():
				cancelled = true
				return
			}
			answer = b.short
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for rest := answer; len(rest) > 0; {
			n := min(32<<10, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				cancelled = true
				return
			}
			rest = rest[n:]
		}
	}))
	return b, url
}

// streamEnded is backendEnded for a bigStreamBackend.
func streamEnded(t *testing.T, be *bigStreamBackend) (cancelled bool) {
	t.Helper()
	return backendEnded(t, &bigBackend{ended: be.ended})
}

const progressStreamBody = `{"model":"m1","stream":true,"temperature":0.9,"messages":[{"role":"user","content":"x"}]}`

// A slow reader of a stream sent with X-Sluice-Progress: 1 frees its
// backend, its slot and the admission ticket once the backend has
// finished, as without the header: the progress writer sits in front of
// the read-ahead, which is armed under it. Both ways a progress stream
// starts: granted at arrival (no comment, the answer as without the
// header) and queued first (the head and a queue comment go out before
// admission, straight through the read-ahead, which takes over after it).
func TestSlowReaderOfAProgressStreamReleasesTheBackend(t *testing.T) {
	for _, queued := range []bool{false, true} {
		name := map[bool]string{false: "granted at arrival", true: "queued first"}[queued]
		t.Run(name, func(t *testing.T) {
			be, beURL := newBigStreamBackend(t, 1<<20)
			cfg := testConfig(beURL)
			cfg.Models[0].Backends[0].MaxConcurrency = 1
			cfg.Server.ResponseReadahead = 2 << 20
			url, gw, reg := readaheadGateway(t, cfg)
			// Progress ticks never come (a nil channel): a queued request
			// reports once, when it is queued, however long it waits on a
			// busy machine.
			gw.progress = func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }
			pool := gw.Runtime().Pools["m1"]
			backend := pool.Backends[0]

			occupier := make(chan string, 1)
			if queued {
				// The backend's only slot is held until release, so the
				// progress request queues.
				go func() {
					resp, err := http.Post(url+"/v1/chat/completions", "application/json",
						strings.NewReader(strings.Replace(progressStreamBody, `"x"`, `"hold"`, 1)))
					if err != nil {
						occupier <- err.Error()
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					occupier <- string(b)
				}()
				<-be.arrived
			}
			req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(progressStreamBody))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Sluice-Progress", "1")
			tr := &http.Transport{DisableCompression: true}
			t.Cleanup(tr.CloseIdleConnections)
			// Returns at the head: for a queued request, its commit.
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d %v; want a 200 event stream", resp.StatusCode, resp.Header)
			}
			if queued {
				if q := gw.Runtime().Queues()["m1"].Stats().Queued; q != 1 {
					t.Fatalf("queued %d; want the progress request waiting (committed early)", q)
				}
				close(be.release)
				if body := <-occupier; body != string(be.short) {
					t.Fatalf("the occupying request's answer %q; want the backend's short one", body)
				}
				if cancelled := streamEnded(t, be); cancelled {
					t.Fatal("the occupying request was cut")
				}
			}

			// The client reads nothing; the backend still finishes and
			// every slot is released.
			if cancelled := streamEnded(t, be); cancelled {
				t.Fatal("the progress stream's backend answer was cut")
			}
			eventually(t, "the backend slot, its work and the admission slot released", func() bool {
				return backend.Inflight() == 0 && backend.Work() == 0 && pool.queue.Stats().InUse == 0
			})

			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			text := string(body)
			comment := ": sluice-queue position=1 "
			if n := strings.Count(text, ": sluice-queue "); n != map[bool]int{false: 0, true: 1}[queued] || queued != strings.HasPrefix(text, comment) {
				t.Fatalf("the stream starts %q with %d queue comments; want one first only when it was queued", text[:min(len(text), 40)], n)
			}
			if n := strings.Count(text, `"content":"`); n != be.events || !strings.HasSuffix(text, "data: [DONE]\n\n") {
				t.Fatalf("the client got %d of %d events (ends %q)", n, be.events, text[max(0, len(text)-40):])
			}
			// The handler counts a client a block or more behind as
			// detached, and frees the read-ahead, before it returns, so
			// before the client can read the end of the body: both are
			// settled here, no waiting. The occupier's short answer went
			// straight to its client and counts nothing.
			if n := metricValue(t, reg, "sluice_readahead_detached_total"); n != 1 {
				t.Fatalf("detached early %v; want 1, the unread progress stream", n)
			}
			assertReadaheadReleased(t, reg)
		})
	}
}

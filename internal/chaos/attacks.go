package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// size picks the quick or the full form of an attack's size.
func (e *env) size(quick, full int) int {
	if e.opt.Quick {
		return quick
	}
	return full
}

const bodyOpening = `{"model":"sim-model","messages":[{"role":"user","content":"`

// uploadHead is a request head announcing a body of length bytes.
func uploadHead(length int) string {
	return fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", length)
}

// stalledUploads: 1,000 connections from ten attacker addresses (100
// each, under the per-address cap) announce an almost maximal body (just
// under max_body_bytes, so the size alone is no reason to refuse), send
// `sent` bytes of it and stall: the slow-upload attack. The RSS
// target allows 64 KiB per upload, so sending 64 KiB each cannot pass:
// the data alone is the whole budget, and each connection costs about
// 24 KiB besides (docs/RELIABILITY.md).
func stalledUploads(sent int) func(ctx context.Context, e *env, row *Row) error {
	return func(ctx context.Context, e *env, row *Row) error {
		n := 1000
		row.StalledUploads = n
		chunk := bodyOpening + strings.Repeat("a", sent)
		head := uploadHead(8<<20 - 4096)
		var t tally
		connAttack{n: n, addrs: 10, open: func(int) []byte { return []byte(head + chunk) }}.run(ctx, e.gw.listen, row, &t)
		row.Attack = t.counts()
		return nil
	}
}

// tricklingUploads: connections announce 1 MiB and send it one byte every
// 500ms: never idle long enough for a gap timeout, never done.
func tricklingUploads(ctx context.Context, e *env, row *Row) error {
	n := e.size(50, 200)
	head := uploadHead(1 << 20)
	var t tally
	connAttack{n: n, addrs: 5, open: func(int) []byte { return []byte(head + bodyOpening) },
		during: func(ctx context.Context, c net.Conn, sent *atomic.Int64) error {
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
					if _, err := c.Write([]byte("a")); err != nil {
						return nil
					}
					sent.Add(1)
				}
			}
		}}.run(ctx, e.gw.listen, row, &t)
	row.Attack = t.counts()
	return nil
}

// slowReaders: clients ask for large answers (streamed, and identical
// cacheable non-streamed ones that share one coalescing flight) through a
// 4 KiB receive window, and read 640 bytes a second.
func slowReaders(ctx context.Context, e *env, row *Row) error {
	n := e.size(12, 48)
	var t tally
	connAttack{n: n, addrs: 4, rcvBuf: 4096, readSlow: true, open: func(i int) []byte {
		var body []byte
		if i%2 == 0 {
			body = chatBody(fmt.Sprintf("slow-%d", i), 16, 256, true)
		} else {
			body = []byte(`{"model":"sim-model","max_tokens":256,"temperature":0,"messages":[{"role":"user","content":"the same large answer for everyone"}]}`)
		}
		return fmt.Appendf(nil, "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}}.run(ctx, e.gw.listen, row, &t)
	row.Attack = t.counts()
	return nil
}

// connectionFlood: thousands of connections from four addresses; half send
// nothing, half send part of a request head and stop (slowloris).
func connectionFlood(ctx context.Context, e *env, row *Row) error {
	n := e.size(3000, 8000)
	var t tally
	connAttack{n: n, addrs: 4, open: func(i int) []byte {
		if i%2 == 0 {
			return nil
		}
		return []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nX-Slow: ")
	}}.run(ctx, e.gw.listen, row, &t)
	row.Attack = t.counts()
	return nil
}

// oversized: header blocks and bodies past the limits, in a loop from four
// workers: a 200 KiB header, a 2 MiB header, a 9 MiB body with
// Content-Length and a 9 MiB chunked body (max_body_bytes is 8 MiB).
func oversized(ctx context.Context, e *env, row *Row) error {
	big := bytes.Repeat([]byte("a"), 9<<20)
	body := append(append([]byte(bodyOpening), big...), `"}]}`...)
	small := chatBody("oversized", 8, 4, false)
	kinds := []func() (*http.Request, error){
		func() (*http.Request, error) { return headerReq(e, small, 200<<10) },
		func() (*http.Request, error) { return headerReq(e, small, 2<<20) },
		func() (*http.Request, error) {
			return http.NewRequest(http.MethodPost, e.gw.url()+"/v1/chat/completions", bytes.NewReader(body))
		},
		func() (*http.Request, error) {
			// A reader that is not a *bytes.Reader: net/http sends it chunked.
			return http.NewRequest(http.MethodPost, e.gw.url()+"/v1/chat/completions", struct{ *bytes.Reader }{bytes.NewReader(body)})
		},
	}
	var t tally
	var wg sync.WaitGroup
	for w := range 4 {
		c := httpClientFrom(attackerIP(w), 20*time.Second)
		wg.Go(func() {
			defer c.CloseIdleConnections()
			for k := w; ctx.Err() == nil; k++ {
				req, err := kinds[k%len(kinds)]()
				if err != nil {
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				t.add(classifyDo(c, req))
			}
		})
	}
	wg.Wait()
	row.Attack = t.counts()
	return nil
}

func headerReq(e *env, body []byte, n int) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, e.gw.url()+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Pad", strings.Repeat("p", n))
	return req, nil
}

// classifyDo sends req and classifies the answer (not streamed).
func classifyDo(c *http.Client, req *http.Request) (outcome, time.Duration, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req = req.WithContext(ctx)
	resp, err := c.Do(req)
	if err != nil {
		return unannounced, 0, transportReason(ctx, err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp)
	if err != nil {
		return unannounced, 0, transportReason(ctx, err)
	}
	if resp.StatusCode < 300 {
		return served, 0, ""
	}
	if ok, why := announcedError(resp.StatusCode, resp.Header, b); !ok {
		return unannounced, 0, why
	}
	return refused, 0, ""
}

// ambiguousJSON: bodies a Python backend reads differently from Go's
// case-insensitive encoding/json: "model" and "Model", duplicate keys,
// "max_tokens" and "Max_Tokens". Each must be a 400 naming the key; one
// that is served counts as an unannounced failure (the gateway acted on
// one reading, the backend on another).
func ambiguousJSON(ctx context.Context, e *env, row *Row) error {
	bodies := []string{
		`{"model":"sim-model","Model":"other-model","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`,
		`{"Model":"sim-model","model":"other-model","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"other-model","model":"sim-model","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"sim-model","max_tokens":4,"Max_Tokens":100000,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"sim-model","stream":false,"Stream":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`,
	}
	c := httpClientFrom(attackerIP(0), 20*time.Second)
	defer c.CloseIdleConnections()
	var t tally
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			row.Attack = t.counts()
			return nil
		case <-tick.C:
		}
		req, err := http.NewRequest(http.MethodPost, e.gw.url()+"/v1/chat/completions", strings.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		o, _, why := classifyDo(c, req)
		if o == served {
			o, why = unannounced, "ambiguous request served"
		}
		t.add(o, 0, why)
	}
}

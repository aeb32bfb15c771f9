package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// TestHitContentLengthOnce: a cache hit's head, as sent on the wire,
// carries one Content-Length, equal to the body's length, for a JSON
// answer and for a stored stream replayed as JSON, with and without the
// rate limit headers the limit stage sets before the cache. replay leaves
// Content-Length to net/http (no delete of its own since branch hitpath):
// this holds the stages before it to setting none.
func TestHitContentLengthOnce(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	cfg := hostedConfig(t, be.URL)
	url, _ := startCachingGatewayCfg(t, cfg, nil, time.Now)
	addr := strings.TrimPrefix(strings.TrimSuffix(url, "/v1/chat/completions"), "http://")
	for _, c := range []struct{ name, key, body string }{
		{"json, rate limited", "k1", `{"model":"m1","temperature":0,"max_tokens":4,"messages":[{"role":"user","content":"a"}]}`},
		{"json", "k2", `{"model":"m1","temperature":0,"max_tokens":4,"messages":[{"role":"user","content":"b"}]}`},
		{"stream stored, json asked", "k2", `{"model":"m1","temperature":0,"max_tokens":4,"messages":[{"role":"user","content":"c"}],"stream":true,"stream_options":{"include_usage":true}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rawHitPost(t, addr, c.key, c.body) // the miss that stores it
			body := strings.Replace(c.body, `,"stream":true,"stream_options":{"include_usage":true}`, "", 1)
			head, got := rawHitPost(t, addr, c.key, body)
			if x := head.Get("X-Cache"); x != "HIT" {
				t.Fatalf("X-Cache %q, want HIT", x)
			}
			if cl := head.Values("Content-Length"); len(cl) != 1 || cl[0] != strconv.Itoa(len(got)) {
				t.Fatalf("Content-Length %q for a %d-byte body", cl, len(got))
			}
		})
	}
}

// rawHitPost posts body with key on a new connection and returns the answer's
// head as sent (every header line kept, repeats included) and its body,
// read up to the connection's close.
func rawHitPost(t *testing.T, addr, key, body string) (http.Header, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", key, len(body), body)
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil { // the status line
		t.Fatal(err)
	}
	head := http.Header{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ": ")
		head[k] = append(head[k], v)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return head, got
}

package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend answers every request with status 200, the Content-Type ct
// and the bytes body, and counts its calls.
func rawBackend(t *testing.T, ct, body string) (*httptest.Server, *atomic.Int32) {
	calls := new(atomic.Int32)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", ct)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s, calls
}

const (
	goodStream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n" +
		"data: [DONE]\n\n"
	// brokenStream is what the chaos suite's broken backend sends: an
	// event cut inside its JSON, an unparsable one, and no [DONE].
	brokenStream = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"he\"\n\n" +
		"event: ???\ndata: {unterminated\n\nretry: -1\n\n"
	streamBody = `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`
)

// A backend's 200 that is not a JSON object never reaches the client: the
// backend is marked failed (and ejected), and a healthy peer answers.
func TestGarbageAnswerIsRetriedOnAHealthyBackend(t *testing.T) {
	for name, bad := range map[string]struct{ ct, body string }{
		"garbage":      {"application/json", "\x00\xffnot json {{{ <html>garbage</html>\n"},
		"truncated":    {"application/json", `{"id":"x","choices":[`},
		"empty":        {"application/json", ""},
		"array":        {"application/json", `[1,2]`},
		"html":         {"text/html", `{"id":"x"}`},
		"no type":      {"", `{"id":"x"}`},
		"sse for json": {"text/event-stream", brokenStream},
		// An error reported with a 2xx status is not an answer: relayed,
		// the client's SDK reads it as an empty completion, and the cache
		// would replay it.
		"error object": {"application/json", `{"error":{"message":"CUDA out of memory","type":"server_error","code":500}}`},
		"vllm error":   {"application/json", `{"object":"error","message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500}`},
	} {
		t.Run(name, func(t *testing.T) {
			badSrv, badCalls := rawBackend(t, bad.ct, bad.body)
			good := newOKBackend(t)
			cfg := testConfig(badSrv.URL, good.URL)
			cfg.Retry.MinPerSecond = 100
			cfg.Health.MaxFails = 1
			srv, gw := startGateway(t, cfg)
			goodName := gw.Runtime().Pools["m1"].Backends[1].Name()
			for i := 0; i < 4; i++ { // round robin: the first starts on the bad backend
				resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
				body := readAll(t, resp)
				if resp.StatusCode != 200 || !strings.HasPrefix(body, `{"id":"x","object":"chat.completion"`) {
					t.Fatalf("request %d: status %d body %q", i, resp.StatusCode, body)
				}
				if got := resp.Header.Get("X-Sluice-Backend"); got != goodName {
					t.Fatalf("request %d answered by %q", i, got)
				}
			}
			b := gw.Runtime().Pools["m1"].Backends[0]
			if badCalls.Load() == 0 || b.Failures() == 0 {
				t.Fatalf("bad backend: %d calls, %d failures; want its answer counted as a failure", badCalls.Load(), b.Failures())
			}
			if b.Usable(time.Now()) {
				t.Fatal("the backend that sent garbage is still in rotation")
			}
		})
	}
}

// A compressed answer's bytes are not checked (the gateway does not
// decompress), but an HTML page is refused by its Content-Type alone.
func TestCompressedAnswerIsCheckedByItsType(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		io.WriteString(w, "\x1f\x8b not really gzip")
	}))
	t.Cleanup(bad.Close)
	srv, gw := startGateway(t, testConfig(bad.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Accept-Encoding", "gzip")
	body := readAll(t, resp)
	if _, code, _ := apiErr(t, body); resp.StatusCode != 502 || code != "upstream_bad_response" {
		t.Fatalf("status %d code %q", resp.StatusCode, code)
	}
	if gw.Runtime().Pools["m1"].Backends[0].Failures() != 1 {
		t.Fatal("the HTML answer did not count as a backend failure")
	}
}

// With no healthy peer, the client gets an OpenAI-shaped 502 with
// Retry-After, never the garbage.
func TestGarbageAnswerWithoutAPeerIs502(t *testing.T) {
	badSrv, _ := rawBackend(t, "application/json", "\x00\xffnot json")
	srv, gw := startGateway(t, testConfig(badSrv.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
	body := readAll(t, resp)
	if _, code, msg := apiErr(t, body); resp.StatusCode != 502 || code != "upstream_bad_response" || strings.Contains(msg, "not json") {
		t.Fatalf("status %d code %q message %q", resp.StatusCode, code, msg)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("a 502 for a malformed answer has no Retry-After")
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if gw.Runtime().Pools["m1"].Backends[0].Failures() != 1 {
		t.Fatal("the malformed answer did not count as a backend failure")
	}
}

// A stream malformed before its first valid event has sent the client
// nothing: it goes to another backend like a refused connection.
func TestBrokenStreamBeforeAnyEventIsRetried(t *testing.T) {
	for name, bad := range map[string]string{
		"chaos":         brokenStream,
		"empty":         "",
		"not sse":       "<html>502 Bad Gateway</html>",
		"data is array": "data: [1]\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			badSrv, badCalls := rawBackend(t, "text/event-stream", bad)
			goodSrv, _ := rawBackend(t, "text/event-stream", goodStream)
			cfg := testConfig(badSrv.URL, goodSrv.URL)
			cfg.Retry.MinPerSecond = 100
			cfg.Health.MaxFails = 1
			srv, gw := startGateway(t, cfg)
			resp := post(t, srv.URL+"/v1/chat/completions", streamBody)
			body := readAll(t, resp)
			if resp.StatusCode != 200 || body != goodStream {
				t.Fatalf("status %d body %q, want the healthy backend's stream", resp.StatusCode, body)
			}
			b := gw.Runtime().Pools["m1"].Backends[0]
			if badCalls.Load() != 1 || b.Failures() != 1 || b.Usable(time.Now()) {
				t.Fatalf("bad backend: %d calls, %d failures, usable %v", badCalls.Load(), b.Failures(), b.Usable(time.Now()))
			}
		})
	}
}

// Once a stream has started, a malformed event or an end without [DONE]
// ends it with an in-band error event right after the last whole event;
// the malformed bytes never reach the client.
func TestBrokenStreamMidwayEndsWithAnErrorEvent(t *testing.T) {
	const first = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"
	for name, tc := range map[string]struct{ tail, code string }{
		"malformed event": {"data: {\"id\":\"c\",\"choi\n\ndata: [DONE]\n\n", "upstream_bad_response"},
		"no done":         {"", "upstream_bad_response"},
		"cut mid-event":   {"data: {\"id\":\"c\",", "upstream_bad_response"},
		"junk line":       {"<html>oops</html>\n\n", "upstream_bad_response"},
	} {
		t.Run(name, func(t *testing.T) {
			badSrv, _ := rawBackend(t, "text/event-stream", first+tc.tail)
			srv, gw := startGateway(t, testConfig(badSrv.URL))
			resp := post(t, srv.URL+"/v1/chat/completions", streamBody)
			body := readAll(t, resp)
			rest, ok := strings.CutPrefix(body, first)
			if resp.StatusCode != 200 || !ok {
				t.Fatalf("status %d body %q, want the valid event first", resp.StatusCode, body)
			}
			data, ok := strings.CutPrefix(rest, "data: ")
			if !ok || !strings.HasSuffix(data, "\n\n") || strings.Count(data, "\n") != 2 {
				t.Fatalf("after the valid event %q, want one error event", rest)
			}
			if _, code, _ := apiErr(t, strings.TrimSpace(data)); code != tc.code {
				t.Fatalf("error event code %q, want %q", code, tc.code)
			}
			if gw.Runtime().Pools["m1"].Backends[0].Failures() != 1 {
				t.Fatal("the broken stream did not count as a backend failure")
			}
		})
	}
}

// Valid streams pass byte for byte, whatever their framing: CRLF line
// ends, comments, keep-alives, multi-line data, an error object from the
// backend itself.
func TestValidStreamFramingPassesUnchanged(t *testing.T) {
	for name, s := range map[string]string{
		"crlf":               "data: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n",
		"comments":           ": keep-alive\n\nid: 7\nretry: 100\n\ndata:{\"a\":1}\n\n: ping\n\ndata: [DONE]\n\n",
		"multiline":          "data: {\"a\":\ndata: 1}\n\ndata: [DONE]\n\n",
		"cr only":            "data: {\"a\":1}\r\rdata: [DONE]\r\r",
		"backend error":      "data: {\"a\":1}\n\ndata: {\"error\":{\"message\":\"oom\",\"type\":\"server_error\",\"code\":null}}\n\n",
		"vllm backend error": "data: {\"a\":1}\n\ndata: {\"object\":\"error\",\"message\":\"oom\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			be, _ := rawBackend(t, "text/event-stream", s)
			srv, gw := startGateway(t, testConfig(be.URL))
			resp := post(t, srv.URL+"/v1/chat/completions", streamBody)
			if body := readAll(t, resp); resp.StatusCode != 200 || body != s {
				t.Fatalf("status %d body %q, want %q", resp.StatusCode, body, s)
			}
			if f := gw.Runtime().Pools["m1"].Backends[0].Failures(); f != 0 {
				t.Fatalf("%d failures for a valid stream", f)
			}
		})
	}
}

// A malformed answer is never cached: once the backend is sane again the
// same request goes upstream and is served, not the failure replayed.
func TestMalformedAnswerIsNeverCached(t *testing.T) {
	var garbage atomic.Bool
	garbage.Store(true)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if garbage.Load() {
			io.WriteString(w, `{"id":"x","choices":[{"message":`) // cut short
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
	}))
	t.Cleanup(be.Close)
	url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	for i := 0; i < 2; i++ { // alone, then through a coalesced flight's retry path
		status, _, body := sendRaw(t, url, isoBody)
		if status != 502 {
			t.Fatalf("garbage answer %d: status %d body %q", i, status, body)
		}
	}
	garbage.Store(false)
	status, h, body := sendRaw(t, url, isoBody)
	if status != 200 || h.Get("X-Cache") != "MISS" || body != `{"id":"x","object":"chat.completion","choices":[]}` {
		t.Fatalf("after recovery: status %d X-Cache %q body %q", status, h.Get("X-Cache"), body)
	}
}

// Every 502 the gateway makes says when to retry, the same second
// whatever the backend did (apiError): unreachable, a malformed answer, a
// reset and a protocol failure alike. The last two had no Retry-After
// (the generic upstream_error answer), so an SDK retried on its own
// backoff after some failures of a backend and a second after others.
func TestEvery502SaysWhenToRetry(t *testing.T) {
	hijack := func(answer func(net.Conn)) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			answer(c)
			c.Close()
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	garbage, _ := rawBackend(t, "application/json", "\x00\xffnot json")
	for _, c := range []struct{ name, url, code string }{
		{"reset", hijack(func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) }), "upstream_error"},
		{"not HTTP", hijack(func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n") }), "upstream_error"},
		{"closed before answering", hijack(func(net.Conn) {}), "upstream_error"},
		{"unreachable", closed.URL, "upstream_unreachable"},
		{"malformed answer", garbage.URL, "upstream_bad_response"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, _ := startGateway(t, testConfig(c.url))
			resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
			body := readAll(t, resp)
			if _, code, _ := apiErr(t, body); resp.StatusCode != http.StatusBadGateway || code != c.code {
				t.Fatalf("status %d code %q, want 502 %q: %s", resp.StatusCode, code, c.code, body)
			}
			if ra, ms := resp.Header.Get("Retry-After"), resp.Header.Get("Retry-After-Ms"); ra != "1" || ms != "1000" {
				t.Errorf("Retry-After %q, retry-after-ms %q; want 1 and 1000", ra, ms)
			}
		})
	}
}

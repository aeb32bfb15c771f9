package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawPost sends one request with exactly these header lines over a raw
// connection, so nothing client-side drops or rewrites them.
func rawPost(t *testing.T, base, path, body string, lines ...string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	head := "POST " + path + " HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	for _, l := range lines {
		head += l + "\r\n"
	}
	head += "\r\n"
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusContinue {
			return resp
		}
	}
}

// Upstream hygiene: connection-scoped headers (and those the client's
// Connection header names), Cookie, Expect, forwarding claims, X-Sluice-*
// control headers and the client's credentials never reach a backend;
// end-to-end headers do. A backend without api_key gets no Authorization
// unless pass_client_auth says so; one with api_key gets its own.
func TestUpstreamHeaderHygiene(t *testing.T) {
	for _, c := range []struct {
		name     string
		apiKey   string
		pass     bool
		wantAuth string
	}{
		{"no key", "", false, ""},
		{"backend key", "backend-secret", false, "Bearer backend-secret"},
		{"pass_client_auth", "", true, "Bearer client-secret"},
	} {
		be := newOKBackend(t)
		cfg := testConfig(be.URL)
		cfg.Models[0].Backends[0].APIKey = c.apiKey
		cfg.Models[0].Backends[0].PassClientAuth = c.pass
		srv, _ := startGateway(t, cfg)
		resp := rawPost(t, srv.URL, "/v1/chat/completions", chatBody,
			"Authorization: Bearer client-secret",
			"Connection: keep-alive, X-Hop-Named, x-other-hop",
			"X-Hop-Named: 1", "X-Other-Hop: 2", "Keep-Alive: timeout=5", "TE: trailers", "Trailer: X-T",
			"Upgrade: websocket", "Proxy-Authorization: Basic cHJveHk=", "Proxy-Foo: bar",
			"Cookie: session=abc", "Expect: 100-continue",
			"X-Sluice-Priority: batch", "X-Sluice-Max-Wait: 1s", "X-Sluice-Anything: x",
			"Forwarded: for=6.6.6.6", "X-Real-IP: 6.6.6.6", "X-Forwarded-For: 6.6.6.6",
			"OpenAI-Organization: org-1", "OpenAI-Project: proj-1", "Api-Key: client-secret", "X-Api-Key: client-secret",
			"X-Goog-Api-Key: client-secret", "X-Custom-E2E: kept", "User-Agent: test-agent")
		if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d %s", c.name, resp.StatusCode, body)
		}
		h := <-be.headers
		for _, k := range []string{"X-Hop-Named", "X-Other-Hop", "Keep-Alive", "Te", "Trailer", "Upgrade",
			"Proxy-Authorization", "Proxy-Foo", "Cookie", "Expect", "X-Sluice-Priority", "X-Sluice-Max-Wait",
			"X-Sluice-Anything", "Forwarded", "X-Real-Ip"} {
			if v := h.Values(k); len(v) > 0 {
				t.Errorf("%s: %s reached the backend: %q", c.name, k, v)
			}
		}
		if v := h.Get("Connection"); v != "" && !strings.EqualFold(v, "keep-alive") && !strings.EqualFold(v, "close") {
			t.Errorf("%s: client Connection tokens reached the backend: %q", c.name, v)
		}
		if got := h.Get("Authorization"); got != c.wantAuth {
			t.Errorf("%s: upstream Authorization %q, want %q", c.name, got, c.wantAuth)
		}
		if h.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Errorf("%s: upstream X-Forwarded-For %q, want the peer only", c.name, h.Get("X-Forwarded-For"))
		}
		for k, want := range map[string]string{"X-Custom-E2E": "kept", "User-Agent": "test-agent"} {
			if h.Get(k) != want {
				t.Errorf("%s: end-to-end %s = %q, want %q", c.name, k, h.Get(k), want)
			}
		}
		// The client's credential in other providers' forms, and the
		// headers choosing the billed account, go only where its
		// Authorization does: with the gateway's api_key they would pick
		// which of the operator's organizations pays.
		for k, v := range map[string]string{"Openai-Organization": "org-1", "Openai-Project": "proj-1",
			"Api-Key": "client-secret", "X-Api-Key": "client-secret", "X-Goog-Api-Key": "client-secret"} {
			want := ""
			if c.pass {
				want = v
			}
			if got := h.Get(k); got != want {
				t.Errorf("%s: upstream %s = %q, want %q", c.name, k, got, want)
			}
		}
	}
}

// A backend's connection-scoped response headers stop at the gateway.
func TestResponseHopHeadersStripped(t *testing.T) {
	be := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Connection", "X-Backend-Hop")
		w.Header().Set("X-Backend-Hop", "secret")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Backend-E2E", "kept")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
	}))
	srv, _ := startGateway(t, testConfig(be))
	resp := rawPost(t, srv.URL, "/v1/chat/completions", chatBody)
	io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend-E2E") != "kept" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	for _, k := range []string{"X-Backend-Hop", "Proxy-Authenticate"} {
		if resp.Header.Get(k) != "" {
			t.Errorf("%s reached the client", k)
		}
	}
}

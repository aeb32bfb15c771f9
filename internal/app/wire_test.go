package app

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// startWireApp serves one model on b through the whole listener stack
// (netguard, framing, gateway), as `sluice serve` does; extra is further
// top-level config lines. Its backend is not probed (noProbes).
func startWireApp(t *testing.T, backendURL, extra string) (host, admin string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n%s%smodels:\n  - name: m1\n    backends:\n      - url: %s\n", noProbes, extra, backendURL)
	writeFile(t, path, src)
	base, admin, cancel, done := startAppAdmin(t, path)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host, admin
}

// rawExchange writes req on a new connection and reads one answer.
func rawExchange(t *testing.T, host string, req []byte) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a bound against hanging, not a measure
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(req)
		wrote <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Errorf("the gateway reset the connection while the client was sending: %v", err)
	}
	return resp, body
}

// openAIError decodes body as an OpenAI error object, or fails.
func openAIError(t *testing.T, body []byte) (code, param, msg string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == nil || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error object: %q (%v)", body, err)
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return *e.Error.Code, param, e.Error.Message
}

// refusalIdentity fails unless resp, an answer made before any request
// reached the pipeline, carries what every answer of the gateway does: a
// Date and a request id in the pipeline's format (32 hex digits).
func refusalIdentity(t *testing.T, resp *http.Response) {
	t.Helper()
	id := resp.Header.Get("X-Request-Id")
	if _, err := hex.DecodeString(id); len(id) != 32 || err != nil {
		t.Errorf("X-Request-Id %q, want 32 hex digits", id)
	}
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
	}
}

// TestServerRefusalsAreOpenAIErrors: the requests net/http refuses before
// any handler runs (two differing Content-Lengths, a transfer coding other
// than chunked, an invalid header name, no Host, an unknown HTTP version,
// an Expect other than 100-continue, a head over max_header_bytes) are
// answered with their status as OpenAI error objects, not net/http's
// plain text an SDK cannot parse, with a Date and a request id, and the
// connection is closed. A head too long because of its request line alone
// is 414 (nginx's answer), one too long because of its headers 431.
func TestServerRefusalsAreOpenAIErrors(t *testing.T) {
	b := backend(t, "a")
	host, _ := startWireApp(t, b.URL, "")
	const body = `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
	cl := fmt.Sprintf("Content-Length: %d\r\n", len(body))
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	for _, c := range []struct {
		name, req   string
		status      int
		code, param string
	}{
		{"two differing Content-Length", head + cl + "Content-Length: 3\r\n\r\n" + body, 400, "malformed_request", ""},
		{"negative Content-Length", head + "Content-Length: -1\r\n\r\n" + body, 400, "malformed_request", ""},
		{"Transfer-Encoding chunked, identity", head + "Transfer-Encoding: chunked, identity\r\n\r\n" + chunked, 501, "unsupported_transfer_encoding", "Transfer-Encoding"},
		{"Transfer-Encoding gzip, chunked", head + "Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked, 501, "unsupported_transfer_encoding", "Transfer-Encoding"},
		{"header name with a space", head + cl + "X Foo: a\r\n\r\n" + body, 400, "malformed_request", ""},
		{"no Host", "POST /v1/chat/completions HTTP/1.1\r\n" + cl + "\r\n" + body, 400, "malformed_request", "Host"},
		{"HTTP/2.0 in an HTTP/1 head", "POST /v1/chat/completions HTTP/2.0\r\nHost: sluice\r\n" + cl + "\r\n" + body, 505, "unsupported_http_version", ""},
		{"not a request line", "HELLO\r\n\r\n", 400, "malformed_request", ""},
		{"Expect other than 100-continue", head + cl + "Expect: teapot\r\n\r\n" + body, 417, "expectation_failed", "Expect"},
		{"70,000-byte query", "GET /v1/models?q=" + strings.Repeat("a", 70000) + " HTTP/1.1\r\nHost: sluice\r\n\r\n", 414, "request_uri_too_long", ""},
		{"70,000-byte path", "GET /v1/" + strings.Repeat("a", 70000) + " HTTP/1.1\r\nHost: sluice\r\n\r\n", 414, "request_uri_too_long", ""},
		{"70,000-byte header", "GET /v1/models HTTP/1.1\r\nHost: sluice\r\nX-Big: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431, "request_header_too_large", ""},
		{"long URL, then headers over the limit", "GET /v1/models?q=" + strings.Repeat("a", 60000) + " HTTP/1.1\r\nHost: sluice\r\nX-Big: " + strings.Repeat("a", 10000) + "\r\n\r\n", 431, "request_header_too_large", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, got := rawExchange(t, host, []byte(c.req))
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, got)
			}
			code, param, msg := openAIError(t, got)
			if code != c.code || param != c.param || resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
				t.Errorf("code %q param %q (want %q %q), Content-Type %q, close %v: %s",
					code, param, c.code, c.param, resp.Header.Get("Content-Type"), resp.Close, got)
			}
			if strings.Contains(msg, "Bad Request") || strings.Contains(msg, "Unsupported") {
				t.Errorf("message is net/http's text: %q", msg)
			}
			refusalIdentity(t, resp)
			// The SDKs retry 501 and 505 unless told: the same head is
			// refused again. The 4xx here they do not retry: no header.
			want := ""
			if c.status >= 500 {
				want = "false"
			}
			if got := resp.Header.Get("X-Should-Retry"); got != want {
				t.Errorf("x-should-retry %q, want %q", got, want)
			}
		})
	}
}

// TestListenerAnswersCarryRequestIDs: the answers the listener makes
// itself, the 408 to a head that did not arrive within
// read_header_timeout and the refusal tier's 503 to a connection over
// max_connections_per_ip, carry a Date and a request id too.
func TestListenerAnswersCarryRequestIDs(t *testing.T) {
	b := backend(t, "a")
	host, _ := startWireApp(t, b.URL, "server: {read_header_timeout: 200ms}\n")
	late, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	late.SetDeadline(time.Now().Add(60 * time.Second)) // a bound against hanging, not a measure
	if _, err := io.WriteString(late, "GET /v1/models HTTP/1.1\r\nHost: sluice\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(late), nil)
	if err != nil {
		t.Fatalf("reading the 408: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	if code, _, _ := openAIError(t, got); resp.StatusCode != http.StatusRequestTimeout || code != "request_timeout" {
		t.Fatalf("late head: %d %q: %s", resp.StatusCode, code, got)
	}
	refusalIdentity(t, resp)

	// An upload still arriving (body_read_timeout: 60 s) holds the
	// address's one slot; a second connection is over the cap.
	host, _ = startWireApp(t, b.URL, "server: {max_connections_per_ip: 1}\n")
	held, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := io.WriteString(held, "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	resp, got = rawExchange(t, host, []byte("GET /v1/models HTTP/1.1\r\nHost: sluice\r\n\r\n"))
	if code, _, _ := openAIError(t, got); resp.StatusCode != http.StatusServiceUnavailable || code != "too_many_connections" {
		t.Fatalf("over the cap: %d %q: %s", resp.StatusCode, code, got)
	}
	refusalIdentity(t, resp)
}

// A CONNECT (authority form: no path) is a 404 naming what it asked for,
// never a 2xx that would hand the connection over.
func TestConnectIsUnknownURL(t *testing.T) {
	b := backend(t, "a")
	host, _ := startWireApp(t, b.URL, "")
	resp, got := rawExchange(t, host, []byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
	code, _, msg := openAIError(t, got)
	if resp.StatusCode != http.StatusNotFound || code != "unknown_url" || msg != "Unknown request URL: CONNECT example.com:443" ||
		resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("CONNECT: %d, code %q, message %q, X-Request-Id %q", resp.StatusCode, code, msg, resp.Header.Get("X-Request-Id"))
	}
}

// TestUnreadBodyWithConnectionCloseIsNotReset: a client that says
// Connection: close and sends a body the gateway answers without reading
// (an unknown URL, a method not allowed) reads the answer: the close
// lingers, as after a 413, instead of resetting the connection over the
// unread bytes (net/http does not drain a body when the connection is
// closing anyway).
func TestUnreadBodyWithConnectionCloseIsNotReset(t *testing.T) {
	b := backend(t, "a")
	host, _ := startWireApp(t, b.URL, "")
	body := bytes.Repeat([]byte("a"), 6<<20)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/v1/no-such-route", http.StatusNotFound},
		{"PUT", "/v1/chat/completions", http.StatusMethodNotAllowed},
		{"POST", "/v1/models", http.StatusMethodNotAllowed},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			req := fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\nContent-Length: %d\r\n\r\n", c.method, c.path, len(body))
			resp, got := rawExchange(t, host, append(req, body...))
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, got)
			}
			openAIError(t, got)
		})
	}
}

// TestLongIdempotencyKeyNamesHeader: a refused Idempotency-Key is named
// in param, as every other refused header is.
func TestLongIdempotencyKeyNamesHeader(t *testing.T) {
	b := backend(t, "a")
	base := startQueueApp(t, b.URL)
	status, _, body := do(t, "POST", base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`),
		"Prefer", "respond-async", "Idempotency-Key", strings.Repeat("k", 256))
	if status != http.StatusBadRequest {
		t.Fatalf("status %d: %s", status, body)
	}
	if code, param, _ := openAIError(t, body); code != "invalid_idempotency_key" || param != "Idempotency-Key" {
		t.Errorf("code %q param %q: %s", code, param, body)
	}
}

// TestListenerRefusalsAreLogged: with the access log on, an answer the
// listener makes itself has a log line carrying the request id the client
// got, its status and code, so an id a client quotes is found as a
// pipeline request's is; with it off, none.
func TestListenerRefusalsAreLogged(t *testing.T) {
	b := backend(t, "a")
	for _, access := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		src := fmt.Sprintf("listen: 127.0.0.1:0\nadmin: {listen: \"off\"}\nlog: {access: %v}\nqueue: {enabled: false}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", access, b.URL)
		cfg := loadFile(t, path, src)
		logs := new(logbuf.Buffer)
		a, err := New(cfg, Source{Path: path}, slog.New(slog.NewJSONHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		addr, cancel, done := runLoopback(t, a)
		for _, req := range []string{
			"GET /v1/models HTTP/1.1\r\nHost: sluice\r\nX Foo: a\r\n\r\n",
			"GET /v1/models?q=" + strings.Repeat("a", 70000) + " HTTP/1.1\r\nHost: sluice\r\n\r\n",
		} {
			resp, _ := rawExchange(t, addr, []byte(req))
			id := resp.Header.Get("X-Request-Id")
			line := ""
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, id) {
					line = l
				}
			}
			want := fmt.Sprintf(`"status":%d`, resp.StatusCode)
			if access && (line == "" || !strings.Contains(line, want) || !strings.Contains(line, `"request refused by the listener"`)) {
				t.Errorf("access log on, %d: no line with X-Request-Id %q, %s:\n%s", resp.StatusCode, id, want, logs)
			}
			if !access && line != "" {
				t.Errorf("access log off, %d: logged %s", resp.StatusCode, line)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

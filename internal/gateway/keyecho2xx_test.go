package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// echoingSuccess is a backend that answers 200 with the Authorization it
// got inside the answer, in the shape and coding named: "json" (with its
// Content-Length), "sse" (the key whole in one event, and split across
// two flushes of another), "gzip" (JSON compressed although asked for
// identity), "gzip-sse" (a stream compressed, flushed per event), "br"
// (labelled br: the gateway cannot read it). It records the
// Accept-Encoding it was sent.
func echoingSuccess(t *testing.T, shape string, sawAE *string) *httptest.Server {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		*sawAE = r.Header.Get("Accept-Encoding")
		auth := r.Header.Get("Authorization")
		answer := fmt.Sprintf(`{"id":"c1","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"you sent %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, auth)
		event := func(content string) string {
			return fmt.Sprintf("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", content)
		}
		end := "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
		switch shape {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
			io.WriteString(w, answer)
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, event("you sent "+auth))
			w.(http.Flusher).Flush()
			second := event("again " + auth)
			cut := strings.Index(second, "SECRET")
			io.WriteString(w, second[:cut])
			w.(http.Flusher).Flush()
			io.WriteString(w, second[cut:]+end)
		case "gzip", "gzip-sse":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			if shape == "gzip" {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(zw, answer)
			} else {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(zw, event("you sent "+auth))
				zw.Flush()
				w.(http.Flusher).Flush()
				io.WriteString(zw, end)
			}
			zw.Close()
		case "br":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "br")
			io.WriteString(w, answer)
		}
	}))
	t.Cleanup(be.Close)
	return be
}

// TestSuccessDoesNotEchoTheBackendKey: the key scrub covered error
// answers only, so a keyed backend's 200 naming its key (a debugging
// echo server, a proxy that reflects headers) handed it to the client,
// plain or compressed. A keyed backend's answers are now scrubbed
// whatever their status: JSON (its Content-Length following), streams
// (events relayed as they come, a key split across reads included),
// gzip decoded and scrubbed as it streams (relayed uncompressed and
// checked like any answer); a coding the gateway cannot read (br, which
// it asked not to get) fails the attempt as a malformed answer (502
// upstream_bad_response) rather than pass unread. The client's
// Accept-Encoding is never passed to a keyed backend (identity).
func TestSuccessDoesNotEchoTheBackendKey(t *testing.T) {
	const key = "sk-upstream-SECRET-0123456789"
	for _, shape := range []string{"json", "sse", "gzip", "gzip-sse", "br"} {
		for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
			var sawAE string
			be := echoingSuccess(t, shape, &sawAE)
			cfg := testConfig(be.URL)
			cfg.UpstreamClient = client
			cfg.Models[0].Backends[0].APIKey = key
			srv, _ := startGateway(t, cfg)
			stream := strings.HasSuffix(shape, "sse")
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
				strings.NewReader(fmt.Sprintf(`{"model":"m1","stream":%t,"messages":[{"role":"user","content":"hi"}]}`, stream)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept-Encoding", "gzip, br")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s %s: %v", shape, client, err)
			}
			if sawAE != "identity" {
				t.Errorf("%s %s: the backend was sent Accept-Encoding %q, want identity", shape, client, sawAE)
			}
			body := string(b)
			if resp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				if err == nil {
					d, _ := io.ReadAll(zr)
					body = string(d)
				}
			}
			if strings.Contains(body, "SECRET") {
				t.Errorf("%s %s: the backend's key reached the client: %d %q", shape, client, resp.StatusCode, body)
				continue
			}
			var ok bool
			switch shape {
			case "br":
				ok = resp.StatusCode == http.StatusBadGateway && strings.Contains(body, `"code":"upstream_bad_response"`)
			case "sse", "gzip-sse":
				ok = resp.StatusCode == http.StatusOK && strings.Contains(body, `"content":"you sent Bearer xxxxx"`) && strings.HasSuffix(body, "data: [DONE]\n\n")
				if shape == "sse" {
					ok = ok && strings.Contains(body, `"content":"again Bearer xxxxx"`)
				}
			default:
				ok = resp.StatusCode == http.StatusOK && strings.Contains(body, `"content":"you sent Bearer xxxxx"`) &&
					resp.Header.Get("Content-Encoding") == "" && resp.Header.Get("Content-Length") == strconv.Itoa(len(b))
			}
			if !ok {
				t.Errorf("%s %s: %d Content-Encoding %q Content-Length %q %q", shape, client, resp.StatusCode,
					resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Length"), body)
			}
		}
	}
}

// TestScrubbedStreamRelaysEachEventAsItComes: the scrub holds back the
// bytes that may start the key until the next read says whether they do;
// an event ends with a newline, which no key contains, so nothing of a
// finished event is held: a stream client reads the first event while
// the backend is still waiting to send the second.
func TestScrubbedStreamRelaysEachEventAsItComes(t *testing.T) {
	release := make(chan struct{})
	openAtCleanup(t, release)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"},\"finish_reason\":null}]}\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].APIKey = "sk-upstream-SECRET-0123456789"
	srv, _ := startGateway(t, cfg)
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := rd.ReadString('\n')
		blank, _ := rd.ReadString('\n')
		first <- line + blank
	}()
	select {
	case event := <-first:
		if !strings.Contains(event, `"content":"one"`) || !strings.HasSuffix(event, "}\n\n") {
			t.Fatalf("first event %q", event)
		}
	case <-time.After(time.Minute): // a hang guard, not the measure of "as it comes"
		t.Fatal("the first event did not reach the client while the backend held the second")
	}
	close(release)
	if rest, _ := io.ReadAll(rd); !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("rest %q", rest)
	}
}

// TestFollowUpOfAKeyedBackendAsksForIdentity: a Responses follow-up (GET
// /v1/responses/{id}) passed the client's Accept-Encoding on to a keyed
// backend, where every other request asks for identity: a client
// accepting br got a backend's br-compressed 401 withheld (the generic
// upstream_error in place of the backend's own message), and a 200
// naming the key relayed compressed, unread. Asked for identity, the
// backend's error comes plain and scrubbed, its success scrubbed too.
func TestFollowUpOfAKeyedBackendAsksForIdentity(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusOK} {
		var sawAE string
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sawAE = r.Header.Get("Accept-Encoding")
			w.Header().Set("Content-Type", "application/json")
			var msg string
			if status == http.StatusOK {
				msg = fmt.Sprintf(`{"id":"resp_x","object":"response","status":"completed","instructions":%q}`, r.Header.Get("Authorization"))
			} else {
				msg = fmt.Sprintf(`{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error","code":"invalid_api_key"}}`,
					r.Header.Get("Authorization"))
			}
			if strings.Contains(sawAE, "br") { // a server that compresses whenever the client says it may
				w.Header().Set("Content-Encoding", "br")
			}
			w.WriteHeader(status)
			io.WriteString(w, msg) // not brotli: never read as such
		}))
		t.Cleanup(be.Close)
		cfg := testConfig(be.URL)
		cfg.Models[0].Backends[0].APIKey = "sk-upstream-SECRET-0123456789"
		srv, _ := startGateway(t, cfg)
		resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_x", "", "Accept-Encoding", "br")
		got := readAll(t, resp)
		if sawAE != "identity" || resp.StatusCode != status || resp.Header.Get("Content-Encoding") != "" ||
			strings.Contains(got, "SECRET") || !strings.Contains(got, "Bearer xxxxx") {
			t.Errorf("GET resp_x (%d): backend sent Accept-Encoding %q; %d Content-Encoding %q %s; want identity asked and the answer relayed scrubbed",
				status, sawAE, resp.StatusCode, resp.Header.Get("Content-Encoding"), got)
		}
	}
}

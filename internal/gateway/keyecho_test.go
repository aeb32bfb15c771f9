package gateway

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// A backend that echoes the key it got in its error message (as OpenAI
// does, masked; as a naive one does, whole) must not hand the gateway's
// upstream api_key to the client: the relayed error says xxxxx, with a
// Content-Length that matches, streamed request or not.
func TestUpstreamErrorDoesNotEchoTheBackendKey(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusTooManyRequests} { // a 429 from every backend is relayed apart (relayBusy)
		keyNotEchoedAt(t, status)
	}
}

func keyNotEchoedAt(t *testing.T, status int) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s. Key %s is not valid.","type":"invalid_request_error","code":"invalid_api_key"}}`,
			r.Header.Get("Authorization"), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	t.Cleanup(be.Close)
	for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
		cfg := testConfig(be.URL)
		cfg.UpstreamClient = client
		cfg.Models[0].Backends[0].APIKey = "sk-upstream-SECRET-0123456789"
		srv, _ := startGateway(t, cfg)
		keyNotEchoed(t, srv.URL, client, status)
	}
}

func keyNotEchoed(t *testing.T, url, client string, status int) {
	t.Helper()
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"model":"m1","stream":%t,"messages":[{"role":"user","content":"hi"}]}`, stream)
		resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("stream=%t: reading the answer: %v", stream, err)
		}
		if resp.StatusCode != status || strings.Contains(string(b), "SECRET") || !strings.Contains(string(b), "Bearer xxxxx. Key xxxxx is") {
			t.Errorf("%s, stream=%t: %d %s: want the %d relayed with the backend's key hidden", client, stream, resp.StatusCode, b, status)
		}
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
			t.Errorf("%s, stream=%t: Content-Length %s for %d bytes", client, stream, cl, len(b))
		}
	}
}

// A client that accepts gzip must not get the backend's key in a
// compressed error body, which the scrub cannot read: a backend with an
// api_key is asked for identity (this one compresses whenever asked).
func TestCompressedUpstreamErrorDoesNotEchoTheBackendKey(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		msg := fmt.Sprintf(`{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error","code":"invalid_api_key"}}`,
			r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, msg)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusUnauthorized)
		zw := gzip.NewWriter(w)
		io.WriteString(zw, msg)
		zw.Close()
	}))
	t.Cleanup(be.Close)
	for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
		cfg := testConfig(be.URL)
		cfg.UpstreamClient = client
		cfg.Models[0].Backends[0].APIKey = "sk-upstream-SECRET-0123456789"
		srv, _ := startGateway(t, cfg)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client does not decompress
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		b := raw
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(zr)
		}
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "SECRET") || !strings.Contains(string(b), "Bearer xxxxx") {
			t.Errorf("%s: %d %s %q: want the 401 with the backend's key hidden", client, resp.StatusCode, resp.Header.Get("Content-Encoding"), b)
		}
	}
}

package gateway

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
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
		resp, raw, _ := chatThroughKeyedBackend(t, be.URL, client, "sk-upstream-SECRET-0123456789", "gzip")
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

// An error body past the 64 KiB held whole is scrubbed as it streams: the
// key at the window's edge, straddling it, and far past it is hidden, and
// the body arrives whole (without a Content-Length the change would
// falsify). The old scrub looked at the first 64 KiB only.
func TestLargeUpstreamErrorDoesNotEchoTheBackendKey(t *testing.T) {
	const key = "sk-upstream-SECRET-0123456789"
	var msg strings.Builder
	msg.WriteString(`{"error":{"message":"`)
	for _, at := range []int{100, 65536 - 10, 65536 + 16<<10 - 7, 300 << 10} { // the last straddles a 16 KiB read too
		msg.WriteString(strings.Repeat("a", at-msg.Len()))
		msg.WriteString(key)
	}
	msg.WriteString(`","type":"invalid_request_error","code":"invalid_api_key"}}`)
	for _, chunked := range []bool{false, true} {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			if !chunked {
				w.Header().Set("Content-Length", strconv.Itoa(msg.Len()))
			}
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, msg.String())
		}))
		t.Cleanup(be.Close)
		for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
			resp, b, err := chatThroughKeyedBackend(t, be.URL, client, key, "")
			want := strings.ReplaceAll(msg.String(), key, "xxxxx")
			if err != nil || resp.StatusCode != http.StatusUnauthorized || string(b) != want {
				t.Errorf("%s, chunked=%t: %d, %d bytes (want %d), %d keys in it, err %v", client, chunked,
					resp.StatusCode, len(b), len(want), strings.Count(string(b), key), err)
			}
		}
	}
}

// A backend that compresses its error although asked for identity: gzip
// and deflate are decompressed and scrubbed, relayed uncompressed with
// their length; a coding the gateway does not decode (br here), or one
// that inflates past 64 KiB, is withheld: the status kept, the body an
// OpenAI error naming the request id. The old code relayed all three
// compressed, key and all.
func TestCompressedErrorIgnoringIdentityIsScrubbedOrWithheld(t *testing.T) {
	const key = "sk-upstream-SECRET-0123456789"
	for _, coding := range []string{"gzip", "deflate", "br", "gzip-bomb"} {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			msg := fmt.Sprintf(`{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error","code":"invalid_api_key"}}`,
				r.Header.Get("Authorization"))
			w.Header().Set("Content-Type", "application/json")
			var buf bytes.Buffer
			switch coding {
			case "gzip", "gzip-bomb":
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(&buf)
				io.WriteString(zw, msg)
				if coding == "gzip-bomb" {
					zw.Write(make([]byte, 10<<20))
				}
				zw.Close()
			case "deflate":
				w.Header().Set("Content-Encoding", "deflate")
				zw := zlib.NewWriter(&buf)
				io.WriteString(zw, msg)
				zw.Close()
			case "br": // not brotli: the gateway must not need to read it to withhold it
				w.Header().Set("Content-Encoding", "br")
				buf.WriteString(msg)
			}
			w.WriteHeader(http.StatusUnauthorized)
			w.Write(buf.Bytes())
		}))
		t.Cleanup(be.Close)
		for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
			resp, b, _ := chatThroughKeyedBackend(t, be.URL, client, key, "gzip, deflate, br")
			ok := resp.StatusCode == http.StatusUnauthorized && !strings.Contains(string(b), "SECRET") &&
				resp.Header.Get("Content-Encoding") == "" && resp.Header.Get("Content-Length") == strconv.Itoa(len(b))
			switch coding {
			case "gzip", "deflate":
				ok = ok && strings.Contains(string(b), "Incorrect API key provided: Bearer xxxxx")
			default:
				ok = ok && strings.Contains(string(b), `"code":"upstream_error"`) &&
					strings.Contains(string(b), resp.Header.Get("X-Request-Id")) && resp.Header.Get("X-Request-Id") != ""
			}
			if !ok {
				t.Errorf("%s, %s: %d Content-Encoding %q Content-Length %q %.300q", coding, client, resp.StatusCode,
					resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Length"), b)
			}
		}
	}
}

// A Responses follow-up (GET /v1/responses/{id}) relays the backend's
// error too: the key it echoes is hidden there as well. The old relay of
// follow-ups did not scrub at all.
func TestFollowUpErrorDoesNotEchoTheBackendKey(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error","code":"invalid_api_key"}}`,
			r.Header.Get("Authorization"))
	}))
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].APIKey = "sk-upstream-SECRET-0123456789"
	srv, _ := startGateway(t, cfg)
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_x", "")
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(got, "SECRET") || !strings.Contains(got, "Bearer xxxxx") ||
		resp.Header.Get("Content-Length") != strconv.Itoa(len(got)) {
		t.Fatalf("GET resp_x: %d %s; want the 401 with the backend's key hidden", resp.StatusCode, got)
	}
}

// chatThroughKeyedBackend posts a chat request through a gateway, on the
// given upstream client, whose one backend (beURL) has api_key key, and
// returns the answer with its body as it arrived and the body's read
// error. acceptEncoding, when set, is sent by hand, so the body is not
// decompressed; "" leaves Go's client to ask for gzip and decompress.
func chatThroughKeyedBackend(t *testing.T, beURL, client, key, acceptEncoding string) (*http.Response, []byte, error) {
	t.Helper()
	cfg := testConfig(beURL)
	cfg.UpstreamClient = client
	cfg.Models[0].Backends[0].APIKey = key
	srv, _ := startGateway(t, cfg)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, err
}

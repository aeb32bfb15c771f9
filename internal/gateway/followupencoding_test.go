package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// followUpEvents is a follow-up stream's body in these tests.
const followUpEvents = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n" +
	"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":1}\n\n"

// getAcceptingGzip asks url with Accept-Encoding: gzip and takes the bytes
// as they come (no transparent decoding).
func getAcceptingGzip(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body) // a cut stream ends in an error; its bytes are checked
	return resp, body
}

// TestFollowUpStreamAskedUncompressed: a follow-up stream (GET
// /v1/responses/{id}?stream=true) is asked of its backend with
// Accept-Encoding: identity, as every inference stream is, whatever the
// client accepts, and the client gets the events uncompressed with no
// Content-Encoding. It used to pass the client's gzip on, so the backend
// compressed it and the relay could neither read it nor end it cleanly.
func TestFollowUpStreamAskedUncompressed(t *testing.T) {
	asked := make(chan string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/responses/") {
			return // a health check: 200
		}
		asked <- r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Type", "text/event-stream")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") { // a backend that honours it
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write([]byte(followUpEvents))
			zw.Close()
			return
		}
		w.Write([]byte(followUpEvents))
	}))
	t.Cleanup(backend.Close)
	srv, _ := startGateway(t, testConfig(backend.URL))
	resp, body := getAcceptingGzip(t, srv.URL+"/v1/responses/resp_1?stream=true")
	if got := <-asked; got != "identity" {
		t.Fatalf("follow-up stream went upstream with Accept-Encoding %q; want identity", got)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || string(body) != followUpEvents {
		t.Fatalf("status %d Content-Encoding %q body %q: want the events uncompressed", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
}

// TestFollowUpCompressedStreamCutStaysDecodable: a backend that compresses
// a follow-up stream although asked not to is relayed raw, its
// Content-Encoding kept; when it breaks off, no plain-text error event is
// appended to the gzip bytes (which would corrupt them): what the client
// got decodes to the events sent, then ends short.
func TestFollowUpCompressedStreamCutStaysDecodable(t *testing.T) {
	srv := gatewayOnGzipCut(t, "/v1/responses/", followUpEvents)
	resp, body := getAcceptingGzip(t, srv.URL+"/v1/responses/resp_1?stream=true")
	requireGzipCut(t, resp, body, followUpEvents)
}

// TestInferenceCompressedStreamCutStaysDecodable: the same for an
// inference stream: a chat stream gzipped although it was asked
// Accept-Encoding: identity ends, when cut, as a truncated gzip body, no
// in-band error event after it (plain text after the gzip bytes made the
// whole body undecodable to the client).
func TestInferenceCompressedStreamCutStaysDecodable(t *testing.T) {
	const events = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
	srv := gatewayOnGzipCut(t, "/v1/chat/completions", events)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept-Encoding", "gzip")
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body) // a cut stream ends in an error; its bytes are checked
	requireGzipCut(t, resp, body, events)
}

// gatewayOnGzipCut starts a gateway in front of a backend that answers
// requests under path with events gzipped (whatever it was asked), then
// breaks the connection mid-stream.
func gatewayOnGzipCut(t *testing.T, path, events string) *httptest.Server {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, path) {
			return // a health check: 200
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write([]byte(events))
		zw.Flush()
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection breaks mid-stream
	}))
	t.Cleanup(backend.Close)
	srv, _ := startGateway(t, testConfig(backend.URL))
	return srv
}

// requireGzipCut checks a compressed stream relayed raw and cut: its
// Content-Encoding kept, its bytes decoding to the events sent, then a
// truncated gzip (nothing appended).
func requireGzipCut(t *testing.T, resp *http.Response, body []byte, events string) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d Content-Encoding %q body %q: want the compressed stream relayed raw", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("body %q is no gzip: %v", body, err)
	}
	plain, err := io.ReadAll(zr)
	if string(plain) != events || err != io.ErrUnexpectedEOF {
		t.Fatalf("decoded %q, %v: want the events sent, then a truncated gzip (nothing appended)", plain, err)
	}
}

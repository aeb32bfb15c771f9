package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/sim"
)

// bigAudioForm is a transcription form for model m1 with a file of
// fileBytes and response_format verbose_json (whose duration tells the
// file's size the backend read: fileBytes/320 tokens, 50 a second).
func bigAudioForm(t *testing.T, fileBytes int) (contentType string, form []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	fw, err := w.CreateFormFile("file", "meeting.mp3")
	if err == nil {
		_, err = fw.Write(bytes.Repeat([]byte{0xff}, fileBytes))
	}
	for _, kv := range [][2]string{{"model", "m1"}, {"response_format", "verbose_json"}} {
		if err == nil {
			err = w.WriteField(kv[0], kv[1])
		}
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), b.Bytes()
}

// sendChunked sends a chunked POST of body (one chunk, then the last
// chunk) to path on a raw connection and reads the answer. A client that
// sends on after a refusal is internal/app's linger test; this one sends
// little more than the bound, so a gateway that stops reading at it
// leaves only the framing unread.
func sendChunked(t *testing.T, addr, path, contentType string, body []byte) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: sluice\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
		path, contentType, len(body))
	if _, err := c.Write(append(append([]byte(head), body...), "\r\n0\r\n\r\n"...)); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, c)
}

// With the default config, an audio upload within OpenAI's bound (a
// 20 MiB recording) is relayed whole, while a 30 MiB one, announced or
// chunked, is 413 naming max_audio_body_bytes; JSON bodies keep their
// 8 MiB bound (max_body_bytes) on the same gateway.
func TestDefaultBodyBoundsByPath(t *testing.T) {
	s, be := simBackend(t, sim.Config{Model: "m1", Instant: true, Seed: 7})
	cfg := testConfig(be.URL) // config.Default()'s bounds
	if cfg.MaxBodyBytes != 8<<20 || cfg.MaxAudioBodyBytes != 25<<20 {
		t.Fatalf("defaults: max_body_bytes %d, max_audio_body_bytes %d", cfg.MaxBodyBytes, cfg.MaxAudioBodyBytes)
	}
	addr, _, reg := startBodyGateway(t, cfg)

	const fileBytes = 20 << 20
	ct, form := bigAudioForm(t, fileBytes)
	for _, path := range []string{"/v1/audio/transcriptions", "/v1/audio/translations"} {
		resp := post(t, "http://"+addr+path, string(form), "Content-Type", ct)
		got := readAll(t, resp)
		var answer struct {
			Duration float64 `json:"duration"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(got), &answer) != nil {
			t.Fatalf("%s, %d MiB form: %d %.300s", path, len(form)>>20, resp.StatusCode, got)
		}
		if want := float64(fileBytes) / 320 / 50; answer.Duration != want {
			t.Fatalf("%s: the backend read %.2f s of audio, want the whole file's %.2f", path, answer.Duration, want)
		}
	}

	const audioBound = "limit of 26214400 bytes (max_audio_body_bytes)"
	const jsonBound = "limit of 8388608 bytes (max_body_bytes)"
	refused := func(name string, resp *http.Response, body, bound string) {
		t.Helper()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d, want 413: %.300s", name, resp.StatusCode, body)
		}
		typ, code, msg := apiErr(t, body)
		if typ != "invalid_request_error" || code != "request_too_large" || !strings.Contains(msg, bound) {
			t.Fatalf("%s: %s %s %q, want request_too_large naming the %s", name, typ, code, msg, bound)
		}
	}
	over := startUploadTo(t, addr, "/v1/audio/transcriptions", ct, 30<<20, 4096)
	resp, body := readResponse(t, over)
	over.Close()
	refused("30 MiB form announced", resp, body, audioBound)

	// Sent without a length: refused once the bytes received pass the bound.
	_, big := bigAudioForm(t, 30<<20)
	resp, body = sendChunked(t, addr, "/v1/audio/transcriptions", ct, big[:25<<20+1])
	refused("30 MiB form chunked", resp, body, audioBound)

	chat := startUpload(t, addr, 9<<20, 4096)
	resp, body = readResponse(t, chat)
	chat.Close()
	refused("9 MiB chat body announced", resp, body, jsonBound)
	resp, body = sendChunked(t, addr, "/v1/chat/completions", "application/json", bytes.Repeat([]byte(" "), 8<<20+1))
	refused("9 MiB chat body chunked", resp, body, jsonBound)

	if got := metricValue(t, reg, "sluice_request_body_refused_total", "reason", netguard.RefusedTooLarge); got != 4 {
		t.Fatalf("too_large refusals = %v, want 4", got)
	}
	waitUntil(t, "the refused bodies' bytes to be released", func() bool {
		return metricValue(t, reg, "sluice_request_body_bytes") == 0
	})
	if n := s.Stats().Requests; n != 2 {
		t.Fatalf("the backend saw %d requests, want the 2 within the bound", n)
	}
}

// max_audio_body_bytes is read per request, as max_body_bytes is: a
// reload changes the bound for the next form.
func TestAudioBodyBoundFollowsReload(t *testing.T) {
	var deps Deps
	cfg := testConfig(newOKBackend(t).URL)
	srv, gw := startGatewayWith(t, cfg, func(d *Deps) { deps = *d })
	addr := strings.TrimPrefix(srv.URL, "http://")
	ct, form := bigAudioForm(t, 2<<20)
	if resp := post(t, srv.URL+"/v1/audio/transcriptions", string(form), "Content-Type", ct); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the reload: %d %s", resp.StatusCode, readAll(t, resp))
	} else {
		readAll(t, resp)
	}

	next := testConfig(cfg.Models[0].Backends[0].URL)
	next.MaxAudioBodyBytes = 1 << 20
	rt, err := Build(next, deps, gw.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(rt)
	c := startUploadTo(t, addr, "/v1/audio/transcriptions", ct, len(form), 100)
	defer c.Close()
	resp, body := readResponse(t, c)
	if _, code, msg := apiErr(t, body); resp.StatusCode != http.StatusRequestEntityTooLarge || code != "request_too_large" ||
		!strings.Contains(msg, "limit of 1048576 bytes (max_audio_body_bytes)") {
		t.Fatalf("after the reload: %d %q %q", resp.StatusCode, code, msg)
	}
}

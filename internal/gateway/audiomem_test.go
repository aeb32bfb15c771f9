package gateway

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// A 4 MiB form fits a max_body_memory of 4.5 MiB and is sent to a backend
// whose upstream_model rewrites it: the form is held once, in the blocks
// it was read into (about its length + 1/8, charged), and the rewrite is
// a splice over them, not a copy. Before, the end of the read held the
// blocks and an assembled copy (2.1 times the form) and this was a 503
// body_memory_full; the rewrite was a further uncharged copy per attempt.
func TestAudioFormHeldOnceWithinBound(t *testing.T) {
	be := newFormRecorder(t, "openai/whisper-large-v3")
	cfg := testConfig(be.URL)
	cfg.Models[0].Name = "whisper"
	cfg.Models[0].Backends[0].UpstreamModel = "openai/whisper-large-v3"
	cfg.MaxBodyBytes = 1 << 20
	cfg.MaxAudioBodyBytes = 4<<20 + 4096
	cfg.Server.MaxBodyMemory = 4<<20 + 4<<20/8
	addr, _, reg := startBodyGateway(t, cfg)

	audio := "RIFF\x00\xff\r\n--" + strings.Repeat("a", 4<<20-1024)
	ct, body := audioForm(t, "model", "whisper", "file", audio, "language", "en")
	resp := post(t, "http://"+addr+"/v1/audio/transcriptions", body, "Content-Type", ct)
	if got := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(got, `"text":"`) {
		t.Fatalf("%d %.300s", resp.StatusCode, got)
	}
	seen := <-be.bodies
	if want := strings.Replace(body, "\r\n\r\nwhisper\r\n", "\r\n\r\nopenai/whisper-large-v3\r\n", 1); !bytes.Equal(seen, []byte(want)) {
		t.Fatalf("the backend got %d bytes, want the form as sent (%d) with its model rewritten", len(seen), len(want))
	}
	if f := formValues(t, ct, seen); f["model"] != "openai/whisper-large-v3" || f["file"] != audio || f["language"] != "en" {
		t.Fatalf("the backend read model %q, a %d-byte file, language %q", f["model"], len(f["file"]), f["language"])
	}
	if got := metricValue(t, reg, "sluice_request_body_refused_total", "reason", netguard.RefusedMemory); got != 0 {
		t.Fatalf("memory refusals = %v, want 0", got)
	}
	waitUntil(t, "the form's bytes to be released", func() bool {
		return metricValue(t, reg, "sluice_request_body_bytes") == 0
	})
}

// A JSON body past the copy threshold (64 KiB) is rewritten for a
// backend's upstream_model as a splice over the pooled body: the backend
// gets every byte as sent but the model's value.
func TestLargeJSONUpstreamModelSplice(t *testing.T) {
	be := newFormRecorder(t, "meta-llama/Meta-Llama-3-8B-Instruct")
	cfg := testConfig(be.URL)
	cfg.Models[0].Name = "llama"
	cfg.Models[0].Backends[0].UpstreamModel = "meta-llama/Meta-Llama-3-8B-Instruct"
	srv, _ := startGateway(t, cfg)
	body := `{"messages":[{"role":"user","content":"` + strings.Repeat("word ", 100<<10/5) + `"}], "model" : "llama","max_tokens":2}`
	resp := post(t, srv.URL+"/v1/chat/completions", body, "Content-Type", "application/json")
	if got := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %.300s", resp.StatusCode, got)
	}
	want := strings.Replace(body, `"model" : "llama"`, `"model" : "meta-llama/Meta-Llama-3-8B-Instruct"`, 1)
	if seen := <-be.bodies; string(seen) != want {
		t.Fatalf("the backend got %d bytes, want the body as sent (%d) with its model rewritten", len(seen), len(want))
	}
}

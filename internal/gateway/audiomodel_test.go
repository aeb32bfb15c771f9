package gateway

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// formRecorder serves a simulator of model behind a handler that keeps
// the last body it was sent and the Content-Length it came with.
type formRecorder struct {
	*httptest.Server
	sim    *sim.Server
	bodies chan []byte
}

func newFormRecorder(t *testing.T, model string) *formRecorder {
	t.Helper()
	s := sim.New(sim.Config{Model: model, DecodeStepBase: time.Millisecond, Seed: 7})
	t.Cleanup(s.Close)
	fr := &formRecorder{sim: s, bodies: make(chan []byte, 10)}
	fr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || r.ContentLength != int64(len(b)) {
			http.Error(w, "Content-Length does not follow the body", http.StatusBadRequest)
			return
		}
		select {
		case fr.bodies <- b:
		default:
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(fr.Close)
	return fr
}

// formValues reads a recorded form: each part's name and content.
func formValues(t *testing.T, ct string, body []byte) map[string]string {
	t.Helper()
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	got := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("%v: %q", err, body)
		}
		v, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		got[p.FormName()] = string(v)
	}
}

func TestAudioUpstreamModel(t *testing.T) {
	// The pool is "whisper"; its server knows the model by its Hugging
	// Face name (vLLM's default served name), and 404s any other.
	be := newFormRecorder(t, "openai/whisper-large-v3")
	cfg := testConfig(be.URL)
	cfg.Models[0].Name = "whisper"
	cfg.Models[0].Backends[0].UpstreamModel = "openai/whisper-large-v3"
	srv, _ := startGateway(t, cfg)
	audio := "RIFF\x00\xff\r\n--" + strings.Repeat("a", 6400)
	ct, body := audioForm(t, "model", "whisper", "file", audio, "language", "en")
	resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, `"text":"`) {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	seen := <-be.bodies
	if want := strings.Replace(body, "\r\n\r\nwhisper\r\n", "\r\n\r\nopenai/whisper-large-v3\r\n", 1); string(seen) != want {
		t.Fatalf("the backend got\n%q\nwant the form as sent but its model\n%q", seen, want)
	}
	if f := formValues(t, ct, seen); f["model"] != "openai/whisper-large-v3" || f["file"] != audio || f["language"] != "en" {
		t.Fatalf("the backend read %q", f)
	}
}

func TestAudioFallback(t *testing.T) {
	fb := newFormRecorder(t, "m2")
	cfg := testConfig(closedURL(t))
	cfg.Health.MaxFails = 1
	cfg.Models[0].Fallbacks = []string{"m2"}
	cfg.Models = append(cfg.Models, config.Model{Name: "m2", Backends: []config.Backend{{URL: fb.URL}}})
	cfg.Auth.Keys = []config.Tenant{{Key: "strict", NoFallback: true}}
	srv, _ := startGateway(t, cfg)
	audio := strings.Repeat("x", 3200)
	ct, body := audioForm(t, "file", audio, "model", "m1", "response_format", "verbose_json")
	resp := post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct) // ejects m1's only backend
	if got := readAll(t, resp); resp.StatusCode/100 != 5 {
		t.Fatalf("m1 has no backend to answer: %d %s", resp.StatusCode, got)
	}
	for _, path := range []string{"/v1/audio/transcriptions", "/v1/audio/translations"} {
		resp := post(t, srv.URL+path, body, "Content-Type", ct)
		if got := readAll(t, resp); resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Model") != "m2" || !strings.Contains(got, `"text":"`) {
			t.Fatalf("%s: %d %q %s", path, resp.StatusCode, resp.Header.Get("X-Sluice-Model"), got)
		}
		if f := formValues(t, ct, <-fb.bodies); f["model"] != "m2" || f["file"] != audio || f["response_format"] != "verbose_json" {
			t.Fatalf("%s: the fallback's backend read %q", path, f)
		}
	}
	resp = post(t, srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct, "Authorization", "Bearer strict")
	// m1's ejected backend is tried as a last resort (lastresort.go): refused, 502.
	if got := readAll(t, resp); resp.StatusCode != 502 {
		t.Fatalf("a no_fallback key was served by a fallback: %d %s", resp.StatusCode, got)
	}
	if n := fb.sim.Stats().Requests; n != 2 {
		t.Fatalf("the fallback's backend saw %d requests, want the two audio requests", n)
	}
}

package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A stream whose client asked for usage (stream_options.include_usage)
// from a backend that ignores stream_options (no usage chunk arrives)
// used to keep its admission estimate (prompt/4 +
// admission.default_max_tokens: 256) in the token buckets. Now it is
// settled as a stream without include_usage is: the prompt's estimate
// and one token per relayed event carrying text.
func TestIncludeUsageStreamWithoutUsageChunkSettlesToTheTokensRelayed(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	defer s.Close()
	strip := regexp.MustCompile(`,?"stream_options":\{[^}]*\}`)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		b = strip.ReplaceAll(b, nil) // a backend that does not know stream_options
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		s.ServeHTTP(w, r)
	}))
	defer be.Close()
	const limit = 100000
	url := tokenGateway(t, testConfig(be.URL), limit)
	stream := `{"model":"m1","messages":[{"role":"user","content":"tell me a long story"}],"stream":true,"stream_options":{"include_usage":true}}`
	status, before, b := remaining(t, url, stream)
	if status != 200 {
		t.Fatalf("stream: %d", status)
	}
	if strings.Contains(b, `"completion_tokens":`) {
		t.Fatalf("the backend sent usage after all: %s", b)
	}
	relayed := 0
	for _, line := range strings.Split(b, "\n") {
		if strings.HasPrefix(line, "data: {") && strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			relayed++
		}
	}
	if relayed == 0 || relayed >= 256 {
		t.Fatalf("the simulator's completion: %d text events", relayed)
	}
	charged, streamEst := settledCharge(t, url, stream, before)
	_, textBytes := relayedText(b)
	want := int(admission.EstimateCost(len(stream), 0, 0)) + int(openai.CompletionTokens(relayed, textBytes))
	if charged != want {
		t.Fatalf("include_usage stream answered without usage charged %d tokens, want %d (prompt estimate + %d relayed); its estimate was %d", charged, want, relayed, streamEst)
	}
}

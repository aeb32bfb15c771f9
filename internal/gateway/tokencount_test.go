package gateway

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/sim"
)

// batchingBackend is the simulator behind a server that packs every n of
// its text events into one, as vLLM does with --stream-interval n (and
// llama.cpp and hosted APIs with their larger chunks): the same text and
// usage, n times fewer events.
func batchingBackend(t *testing.T, s *sim.Server, n int) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		var text strings.Builder
		held := 0
		flush := func() {
			if held == 0 {
				return
			}
			b, _ := json.Marshal(text.String())
			fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},\"finish_reason\":null}]}\n\n", b)
			text.Reset()
			held = 0
		}
		sc := bufio.NewScanner(rec.Body)
		for sc.Scan() {
			line := sc.Text()
			if c, ok := deltaContent(line); ok && c != "" {
				text.WriteString(c)
				if held++; held == n {
					flush()
				}
				continue
			}
			if line != "" {
				flush()
				fmt.Fprintf(w, "%s\n\n", line)
			}
		}
		flush()
	}))
	t.Cleanup(be.Close)
	return be
}

// deltaContent is the content of a chat chunk's event line.
func deltaContent(line string) (string, bool) {
	data, ok := strings.CutPrefix(line, "data: ")
	if !ok || !strings.HasPrefix(data, "{") {
		return "", false
	}
	var c struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal([]byte(data), &c) != nil || len(c.Choices) == 0 {
		return "", false
	}
	return c.Choices[0].Delta.Content, true
}

// relayedText is the events carrying content in a streamed answer and the
// bytes of that content (plain ASCII here: as the JSON spells it).
func relayedText(body string) (events, textBytes int) {
	for _, line := range strings.Split(body, "\n") {
		if c, ok := deltaContent(line); ok && c != "" {
			events++
			textBytes += len(c)
		}
	}
	return events, textBytes
}

// completionOf is the completion_tokens of a stream's usage chunk.
func completionOf(t *testing.T, body string) int {
	t.Helper()
	i := strings.LastIndex(body, `"completion_tokens":`)
	if i < 0 {
		t.Fatalf("no usage chunk: %s", body)
	}
	n, _ := strconv.Atoi(strings.TrimRight(strings.SplitN(body[i+len(`"completion_tokens":`):], ",", 2)[0], "}"))
	return n
}

// A stream without usage from a server that packs several tokens into an
// event (here 8) used to be charged one token per event: 64 tokens
// generated, 8 charged. Now the relayed text's bytes / 4 count when they
// are more than the events: never below what the backend generated.
func TestBatchedStreamWithoutUsageIsNotUndercounted(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond, DefaultMaxTokens: 64})
	defer s.Close()
	be := batchingBackend(t, s, 8)
	const limit = 100000
	url := tokenGateway(t, testConfig(be.URL), limit)
	stream := `{"model":"m1","messages":[{"role":"user","content":"tell me a long story"}],"stream":true}`
	_, _, b := remaining(t, url, strings.Replace(stream, `"stream":true`, `"stream":true,"stream_options":{"include_usage":true}`, 1))
	truth := completionOf(t, b)
	status, before, b := remaining(t, url, stream)
	if status != 200 {
		t.Fatalf("stream: %d %s", status, b)
	}
	events, textBytes := relayedText(b)
	if truth != 64 || events != 8 {
		t.Fatalf("the backend: %d tokens in %d events, want 64 in 8", truth, events)
	}
	charged, _ := settledCharge(t, url, stream, before)
	prompt := int(admission.EstimateCost(len(stream), 0, 0))
	want := prompt + int(openai.CompletionTokens(events, textBytes))
	if charged != want || charged < prompt+truth {
		t.Fatalf("a stream of %d tokens in %d events (%d bytes of text) charged %d, want %d (prompt %d + bytes/4), never below %d",
			truth, events, textBytes, charged, want, prompt, prompt+truth)
	}
}

// longStreamBackend streams gen one-token events ("tok ") without usage,
// each answer held until release is closed; arrived gets a value as each
// request comes in.
func longStreamBackend(t *testing.T, gen int, arrived chan<- struct{}, release <-chan struct{}) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if arrived != nil {
			arrived <- struct{}{}
		}
		if release != nil {
			<-release
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := range gen {
			if _, err := io.WriteString(w, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"},\"finish_reason\":null}]}\n\n"); err != nil {
				return // the gateway cut the stream
			}
			if i%50 == 0 {
				fl.Flush()
			}
		}
		io.WriteString(w, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	return be
}

// Streams without max_tokens reserve admission.default_max_tokens (256)
// and used to be settled only at their end, so a key could open as many
// as its limit held reservations for and each then generate without
// bound: 1,200 tokens a minute, 8 streams sent at once, 4 admitted, each
// streaming 2,000 tokens: 8,000 generated on a frozen clock (6.7 times
// the limit), and more with longer answers. Now such a stream asks its
// limits for each further step of tokens as it goes and is cut, told
// rate_limit_exceeded in-band, when they refuse: what the key's streams
// generate stays within its limit.
func TestConcurrentLongStreamsStayWithinTheTokenLimit(t *testing.T) {
	const limit, n, gen = 1200, 8, 2000
	arrived, release := make(chan struct{}, n), make(chan struct{})
	openAtCleanup(t, release)
	be := longStreamBackend(t, gen, arrived, release)
	url := tokenGateway(t, testConfig(be.URL), limit)
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, n)
	for i := range n {
		go func() {
			resp := post(t, url, fmt.Sprintf(`{"model":"m1","messages":[{"role":"user","content":"story %d"}],"stream":true}`, i), "Authorization", "Bearer k")
			answers <- answer{resp.StatusCode, readAll(t, resp)}
		}()
	}
	var got []answer
	admitted := 0
	for admitted+len(got) < n { // every request admitted (at the backend) or refused
		select {
		case <-arrived:
			admitted++
		case a := <-answers:
			if a.status != http.StatusTooManyRequests {
				t.Fatalf("before any stream ended: %d %s", a.status, a.body)
			}
			got = append(got, a)
		}
	}
	close(release)
	for len(got) < n {
		got = append(got, <-answers)
	}
	relayed, cut := 0, 0
	for _, a := range got {
		if a.status == 200 {
			relayed += strings.Count(a.body, `"content":"tok "`)
			if strings.Contains(a.body, `"code":"rate_limit_exceeded"`) {
				cut++
			}
		}
	}
	prompt := int(admission.EstimateCost(len(`{"model":"m1","messages":[{"role":"user","content":"story 0"}],"stream":true}`), 0, 0))
	t.Logf("%d streams admitted of %d, %d tokens relayed, %d cut", admitted, n, relayed, cut)
	if used := relayed + admitted*prompt; admitted == 0 || used > limit || cut == 0 {
		t.Fatalf("%d streams admitted of %d, %d tokens relayed (+ %d prompt each: %d) on a limit of %d a minute; %d cut",
			admitted, n, relayed, prompt, used, limit, cut)
	}
}

// A long stream without max_tokens whose limit has room is relayed whole
// and settled to what it generated, as before the budget.
func TestLongStreamWithinTheTokenLimitIsWhole(t *testing.T) {
	const gen = 2000
	be := longStreamBackend(t, gen, nil, nil)
	const limit = 100000
	url := tokenGateway(t, testConfig(be.URL), limit)
	stream := `{"model":"m1","messages":[{"role":"user","content":"a long story"}],"stream":true}`
	status, before, b := remaining(t, url, stream)
	if relayed := strings.Count(b, `"content":"tok "`); status != 200 || relayed != gen || !strings.HasSuffix(b, "data: [DONE]\n\n") {
		t.Fatalf("%d, %d of %d tokens relayed, ends %q", status, relayed, gen, b[max(0, len(b)-80):])
	}
	charged, _ := settledCharge(t, url, stream, before)
	if want := int(admission.EstimateCost(len(stream), 0, 0)) + gen; charged != want {
		t.Fatalf("charged %d, want %d", charged, want)
	}
}

// With token limits on the key, its tenant and the gateway, the
// x-ratelimit-*-tokens trio describes the one closest to refusing (the
// fewest tokens left), whichever scope it is, as the requests trio does.
func TestTokenHeadersNameTheTightestLimit(t *testing.T) {
	be := fixedUsageBackend(t) // usage: 7 tokens
	cfg := testConfig(be.URL)
	cfg.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "t"}, {Key: "k2", Tenant: "t"}}
	tokens := func(n int64) *int64 { return &n }
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: tokens(100000)}
	cfg.RateLimits.Keys = map[string]config.RateRule{"k2": {TokensPerMinute: tokens(500)}}
	cfg.RateLimits.PerTenant = config.RateRule{TokensPerMinute: tokens(2000)}
	cfg.RateLimits.Global = config.RateRule{TokensPerMinute: tokens(50000)}
	clk := &frozenClock{now: time.Now()}
	url, _ := startCachingGatewayCfg(t, cfg, nil, clk.Now)
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":100}`
	est := int(admission.EstimateCost(len(body), 100, 0))
	trio := func(key string) (int, int) {
		t.Helper()
		resp := post(t, url, body, "Authorization", "Bearer "+key)
		readAll(t, resp)
		limit, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Limit-Tokens"))
		left, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", key, resp.StatusCode)
		}
		return limit, left
	}
	// k1: the tenant's 2000 is the tightest (key 100000, global 50000).
	if limit, left := trio("k1"); limit != 2000 || left != 2000-est {
		t.Fatalf("k1: limit %d remaining %d, want the tenant's: 2000, %d", limit, left, 2000-est)
	}
	// k2: its own 500 is.
	if limit, left := trio("k2"); limit != 500 || left != 500-est {
		t.Fatalf("k2: limit %d remaining %d, want its key's: 500, %d", limit, left, 500-est)
	}
	// k1 again: the tenant, now with both earlier requests' 7 tokens.
	if limit, left := trio("k1"); limit != 2000 || left != 2000-7-7-est {
		t.Fatalf("k1 again: limit %d remaining %d, want 2000, %d", limit, left, 2000-14-est)
	}
}

// gzipUsageBackend answers 2,000 completion tokens with their usage, as
// JSON or as a stream with a usage chunk, gzip-compressed when the request
// accepts it (as a backend behind a compressing proxy does).
func gzipUsageBackend(t *testing.T) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var out io.Writer = w
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			out = zw
		}
		const usage = `"usage":{"prompt_tokens":9,"completion_tokens":2000,"total_tokens":2009}`
		if !strings.Contains(string(b), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(out, `{"id":"c","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"`+strings.Repeat("tok ", 2000)+`"},"finish_reason":"stop"}],`+usage+`}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for range 2000 {
			io.WriteString(out, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"}}]}\n\n")
		}
		io.WriteString(out, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],"+usage+"}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(be.Close)
	return be
}

// A client that accepts gzip (Go's and Python's HTTP clients send
// Accept-Encoding: gzip unasked) had it passed to the backend, and a
// compressed answer is relayed unread: its usage was never seen, so the
// request kept its estimate (here 271 tokens for 2,009 used), and a stream
// without max_tokens escaped its budget. Now a request charged to a token
// limit asks the backend for identity, as cached ones do, and is settled
// to its usage.
func TestCompressedAnswersAreSettledToTheirUsage(t *testing.T) {
	be := gzipUsageBackend(t)
	for _, stream := range []string{"", `,"stream":true,"stream_options":{"include_usage":true}`} {
		const limit = 100000
		url := tokenGateway(t, testConfig(be.URL), limit)
		body := `{"model":"m1","messages":[{"role":"user","content":"hi"}]` + stream + `}`
		status, before, b := remaining(t, url, body)
		if status != 200 || !strings.Contains(b, `"completion_tokens":2000`) {
			t.Fatalf("%s: %d %.200s", stream, status, b)
		}
		if charged, est := settledCharge(t, url, body, before); charged != 2009 {
			t.Fatalf("stream %v: charged %d, want the usage's 2009 (estimate %d)", stream != "", charged, est)
		}
	}
}

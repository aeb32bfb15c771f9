package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Loopback addresses: Linux routes all of 127/8 to lo, so each party gets
// its own client address and a per-address cap cannot confuse them.
var wellBehavedIP = net.IPv4(127, 0, 0, 2)

// attackerIP is the i-th attacker address: 127.0.0.3, 127.0.0.4, ...
func attackerIP(i int) net.IP { return net.IPv4(127, 0, byte(3+i/250), byte(3+i%250)) }

// httpClientFrom is an HTTP client whose connections come from ip.
func httpClientFrom(ip net.IP, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024,
		DisableCompression: true, IdleConnTimeout: 30 * time.Second,
	}}
}

// load is the request shape of the well-behaved client.
type load struct {
	PromptTokens, OutputTokens int
	Rate                       float64       // requests per second
	Timeout                    time.Duration // a request still open after this is a hang
}

// wellBehaved is the client the suite protects: it streams chat
// completions from its own address at a steady rate and records each
// request's outcome and time to first token.
type wellBehaved struct {
	target string
	load   load
	client *http.Client
	seq    atomic.Int64
}

func newWellBehaved(target string, l load) *wellBehaved {
	return &wellBehaved{target: target, load: l, client: httpClientFrom(wellBehavedIP, 0)}
}

// run sends requests at the configured rate until ctx ends, then waits for
// the requests in flight (each bounded by load.Timeout).
func (w *wellBehaved) run(ctx context.Context, t *tally) {
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / w.load.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			w.client.CloseIdleConnections()
			return
		case <-tick.C:
			wg.Go(func() {
				sent := time.Now()
				o, ttft, why, head := w.one()
				t.add(o, ttft, why)
				t.traced(sent, o, ttft, head)
			})
		}
	}
}

// one sends one streaming request and classifies its end. It does not take
// the phase's ctx: a request sent is followed to its end.
func (w *wellBehaved) one() (outcome, time.Duration, string, http.Header) {
	ctx, cancel := context.WithTimeout(context.Background(), w.load.Timeout)
	defer cancel()
	n := w.seq.Add(1)
	body := chatBody(fmt.Sprintf("wb-%d", n), w.load.PromptTokens, w.load.OutputTokens, true)
	var head http.Header
	o, ttft, why := streamRequestSeen(ctx, w.client, w.target, body, func(h http.Header) { head = h })
	return o, ttft, why, head
}

// chatBody is a chat completion request with a unique first word (so no
// cache or prefix cache serves it) and promptTokens words in all.
func chatBody(unique string, promptTokens, maxTokens int, stream bool) []byte {
	var p strings.Builder
	p.WriteString(unique)
	for i := 1; i < promptTokens; i++ {
		p.WriteString(" lorem")
	}
	return fmt.Appendf(nil, `{"model":"sim-model","stream":%t,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`,
		stream, maxTokens, p.String())
}

// streamRequest posts body to /v1/chat/completions and reads the answer to
// its end: a stream to [DONE], or a JSON body.
func streamRequest(ctx context.Context, c *http.Client, target string, body []byte) (outcome, time.Duration, string) {
	return streamRequestSeen(ctx, c, target, body, nil)
}

// streamRequestSeen is streamRequest that also hands the response's
// headers to seen (when not nil), for a trace.
func streamRequestSeen(ctx context.Context, c *http.Client, target string, body []byte, seen func(http.Header)) (outcome, time.Duration, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return unannounced, 0, "build request: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return unannounced, 0, transportReason(ctx, err)
	}
	defer resp.Body.Close()
	if seen != nil {
		seen(resp.Header)
	}
	if resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return unannounced, 0, transportReason(ctx, err)
		}
		if ok, why := announcedError(resp.StatusCode, resp.Header, b); !ok {
			return unannounced, 0, why
		}
		return refused, 0, ""
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return unannounced, 0, transportReason(ctx, err)
		}
		if !isCompletion(b) {
			return unannounced, 0, "200 whose body is not a completion"
		}
		return served, time.Since(start), ""
	}
	var ttft time.Duration
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return unannounced, 0, "stream ended without [DONE] or an error event"
			}
			return unannounced, 0, transportReason(ctx, err)
		}
		data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			if ttft == 0 {
				return unannounced, 0, "[DONE] before any chunk"
			}
			return served, ttft, ""
		}
		if isOpenAIError(data) {
			return refused, 0, ""
		}
		if !isChunk(data) {
			return unannounced, 0, "stream event that is neither a chunk nor an error"
		}
		if ttft == 0 {
			ttft = time.Since(start)
		}
	}
}

func isCompletion(b []byte) bool {
	var v struct {
		Choices []any `json:"choices"`
	}
	return jsonValid(b, &v) && v.Choices != nil
}

func isChunk(b []byte) bool {
	var v struct {
		Choices []any `json:"choices"`
	}
	return jsonValid(b, &v) && v.Choices != nil
}

// transportReason names a transport failure: a hang (our timeout) or a
// reset/close by the peer.
func transportReason(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "hang (no end within the client timeout)"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "hang (no end within the client timeout)"
	}
	if strings.Contains(err.Error(), "reset") {
		return "connection reset"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF") {
		return "connection closed without an answer"
	}
	return "transport error"
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// driver sends the soak's traffic. Every request goes to the gateway on
// loopback from a source address of its kind (Linux routes 127/8 to lo),
// so the per-address rate limit refuses the bursts and not the mix.
type driver struct {
	base string // http://HOST:PORT
	rng  *rand.Rand
	rmu  sync.Mutex

	mix     []*http.Client // the steady mix, spread over 8 addresses
	burst   *http.Client   // the rate-limit burst: one address
	flood   []*http.Client // the queue burst: 8 more addresses
	slow    *http.Client   // slow readers: a 4 KiB receive buffer
	keyed   *http.Client   // --revoke's jobs under the API key: one address
	sem     chan struct{}  // bounds the mix's requests in flight
	slowSem chan struct{}

	mu       sync.Mutex
	outcomes map[string]int // "kind status" -> count
	resp     respState      // the Responses traffic's ids and failures, and the disturbances' epoch
	ep       failLog        // the other endpoints' unexpected answers (endpoints.go)
	hooks    *hookSink      // half the async jobs name its URL as their webhook (nil: none)
	bhooks   *batchHookSink // the batch webhook events' receiver (nil: none)
	batches  int            // batches started: even ones from mix[0], odd ones from mix[1] (two tenants)
	wg       sync.WaitGroup
}

func newDriver(base string, seed uint64, maxInFlight int) *driver {
	d := &driver{base: base, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), outcomes: map[string]int{},
		sem: make(chan struct{}, maxInFlight), slowSem: make(chan struct{}, 4)}
	for i := 0; i < 8; i++ {
		d.mix = append(d.mix, clientFrom(fmt.Sprintf("127.0.0.%d", 10+i), 0, true))
		d.flood = append(d.flood, clientFrom(fmt.Sprintf("127.0.0.%d", 30+i), 0, false))
	}
	// The bursts' clients keep no connection: 160 parked keep-alive
	// connections (two goroutines and an fd each in the gateway until a
	// side's idle timeout) would be most of what the samples measure.
	d.burst = clientFrom("127.0.0.3", 0, false)
	d.slow = clientFrom("127.0.0.4", 4096, true)
	d.keyed = clientFrom("127.0.0.5", 0, false)
	return d
}

func clientFrom(ip string, rcvbuf int, keepAlive bool) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		dialer.Control = smallReceiveBuffer(rcvbuf)
	}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16,
		IdleConnTimeout: 30 * time.Second, DisableCompression: true, DisableKeepAlives: !keepAlive}}
}

// closeIdle drops the driver's idle keep-alive connections, so the idle
// samples count none of them in the gateway.
func (d *driver) closeIdle() {
	for _, c := range append(append([]*http.Client{d.burst, d.slow}, d.mix...), d.flood...) {
		c.CloseIdleConnections()
	}
}

func (d *driver) count(kind string, status any) {
	d.mu.Lock()
	d.outcomes[fmt.Sprintf("%s %v", kind, status)]++
	d.mu.Unlock()
}

func (d *driver) intn(n int) int {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	return d.rng.IntN(n)
}

var words = strings.Fields("the gateway sends every request to a backend that can start it soon and refuses what cannot start in time with an honest answer")

func (d *driver) prompt() string {
	n := 20 + d.intn(40)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[d.intn(len(words))]
	}
	return strings.Join(ws, " ")
}

func chatBody(prompt string, maxTokens int, stream, deterministic bool) string {
	b, _ := json.Marshal(map[string]any{"model": "sim-model", "max_tokens": maxTokens, "stream": stream,
		"messages": []map[string]string{{"role": "user", "content": prompt}}})
	if deterministic {
		b = append(b[:len(b)-1], `,"temperature":0}`...)
	}
	return string(b)
}

// run sends the mix at rate requests/s (Poisson arrivals) until ctx ends.
func (d *driver) run(ctx context.Context, rate float64) {
	for {
		d.rmu.Lock()
		gap := time.Duration(d.rng.ExpFloat64() / rate * float64(time.Second))
		d.rmu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		select {
		case d.sem <- struct{}{}:
		default:
			d.count("driver", "dropped (in-flight bound)")
			continue
		}
		d.wg.Add(1)
		go func() {
			defer func() { <-d.sem; d.wg.Done() }()
			d.one(ctx)
		}()
	}
}

// one sends one request of the mix; the weights are percentages (of the
// 92% that is not endpoint's).
func (d *driver) one(ctx context.Context) {
	c := d.mix[d.intn(len(d.mix))]
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if d.intn(100) < 8 { // rerank, score, tokenizer, moderations, audio; the rest as before
		d.endpoint(rctx, c)
		return
	}
	p := d.intn(100)
	switch {
	case p < 16:
		d.post(rctx, c, "chat", "/v1/chat/completions", chatBody(d.prompt(), 16, false, false), nil, readAll)
	case p < 34:
		d.post(rctx, c, "chat-stream", "/v1/chat/completions", chatBody(d.prompt(), 32, true, false), nil, readAll)
	case p < 42:
		body := fmt.Sprintf(`{"model":"sim-model","prompt":%q,"max_tokens":16,"stream":%v}`, d.prompt(), d.intn(2) == 0)
		d.post(rctx, c, "completion", "/v1/completions", body, nil, readAll)
	case p < 52:
		input := fmt.Sprintf("fixed input %d", d.intn(5)) // half repeated: cache hits
		if d.intn(2) == 0 {
			input = d.prompt()
		}
		d.post(rctx, c, "embedding", "/v1/embeddings", fmt.Sprintf(`{"model":"sim-model","input":%q}`, input), nil, readAll)
	case p < 63:
		// Identical deterministic prompts: hits, and coalesced flights when
		// two are in flight together.
		prompt := fmt.Sprintf("repeated prompt number %d about the gateway", d.intn(6))
		d.post(rctx, c, "cached", "/v1/chat/completions", chatBody(prompt, 24, d.intn(2) == 0, true), nil, readAll)
	case p < 75:
		d.responses(rctx, c)
	case p < 83:
		d.post(rctx, c, "disconnect", "/v1/chat/completions", chatBody(d.prompt(), 128, true, false), nil, readThenCut(cancel))
	case p < 88:
		select {
		case d.slowSem <- struct{}{}:
			defer func() { <-d.slowSem }()
			if stallFor > 0 && d.intn(2) == 0 {
				// A client that stops reading a stream for a while: the
				// gateway's socket buffer fills and its writes wait.
				d.post(rctx, d.slow, "stalled-reader", "/v1/chat/completions", chatBody(d.prompt(), 2048, true, false), nil, readStalled(stallFor))
				return
			}
			d.post(rctx, d.slow, "slow-reader", "/v1/chat/completions", chatBody(d.prompt(), 512, true, false), nil, readSlowly)
		default:
			d.count("slow-reader", "skipped (4 in flight)")
		}
	default:
		d.job(rctx, c)
	}
}

type reader func(io.Reader) error

func readAll(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }

// readThenCut reads two events and then goes away mid-stream.
func readThenCut(cancel func()) reader {
	return func(r io.Reader) error {
		br := bufio.NewReader(r)
		for events := 0; events < 2; {
			line, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(line, "data: ") {
				events++
			}
		}
		cancel()
		return nil
	}
}

// readStalled reads 4 KiB, stops reading for stall (the gateway's writes
// fill the 4 KiB receive buffer and its own send buffer, and wait), then
// reads the rest as fast as it comes.
func readStalled(stall time.Duration) reader {
	return func(r io.Reader) error {
		if _, err := io.CopyN(io.Discard, r, 4096); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		time.Sleep(stall)
		return readAll(r)
	}
}

// readSlowly reads 256 bytes every 100 ms (2.5 KiB/s through a 4 KiB
// receive buffer) for at most 20 s, then hangs up if the answer is not over.
func readSlowly(r io.Reader) error {
	buf := make([]byte, 256)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := r.Read(buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// post sends one request and reads its answer with read; the outcome is
// counted by kind and status ("err" for a transport error).
func (d *driver) post(ctx context.Context, c *http.Client, kind, path, body string, hdr map[string]string, read reader) *http.Response {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, strings.NewReader(body))
	if err != nil {
		d.count(kind, "err")
		return nil
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		d.count(kind, "err")
		return nil
	}
	defer resp.Body.Close()
	status := fmt.Sprint(resp.StatusCode)
	if (resp.StatusCode == 429 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") == "" {
		status += " without Retry-After"
	}
	if err := read(resp.Body); err != nil && ctx.Err() == nil {
		status += " read-err"
	}
	d.count(kind, status)
	return resp
}

// getJSON GETs path and decodes a 200 answer into v (nil: read and dropped).
func (d *driver) getJSON(ctx context.Context, c *http.Client, path string, v any) error {
	return d.exchange(ctx, c, http.MethodGet, path, "", nil, v)
}

// exchange sends one request and decodes a 200 answer into v (nil: read
// and dropped); any other status is an error carrying the answer.
func (d *driver) exchange(ctx context.Context, c *http.Client, method, path, ctype string, body io.Reader, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// summary is the outcome counts, sorted.
func (d *driver) summary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.outcomes))
	for k := range d.outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-40s %d\n", k, d.outcomes[k])
	}
	return b.String()
}

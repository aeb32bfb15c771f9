// Command sdkcheck drives a running Sluice with the official OpenAI Go SDK
// (github.com/openai/openai-go/v3), unmodified, and prints one line per
// check: PASS or FAIL, its name, what a user's code saw through the SDK's
// own types. It exits 1 when any check fails. Run by ../go.sh, which
// starts the gateway and two simulators; this module is its own so the
// gateway's module never depends on the SDK.
//
// Usage:
//
//	sdkcheck -base http://127.0.0.1:PORT/v1 -key K -slow-key S -fast-key F [-cut-model M] [-ready URL]
//	sdkcheck -ports N   (prints N free loopback ports, for go.sh)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	base := flag.String("base", "", "the gateway's /v1 URL")
	key := flag.String("key", "", "an API key without a rate limit")
	slowKey := flag.String("slow-key", "", "a key limited to 0.1 requests a minute (Retry-After 600 s)")
	fastKey := flag.String("fast-key", "", "a key limited to 30 requests a minute (Retry-After 2 s)")
	model := flag.String("model", "m", "the model the gateway serves")
	cutModel := flag.String("cut-model", "", "a model whose backend drops every answer half-way (the cut-stream checks; none when empty)")
	ports := flag.Int("ports", 0, "print this many free loopback ports and exit")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound on the whole run")
	ready := flag.String("ready", "", "wait until this URL answers 200 (the gateway's /readyz) before the checks")
	flag.Parse()
	if *ports > 0 {
		if err := printFreePorts(os.Stdout, *ports); err != nil {
			fmt.Fprintln(os.Stderr, "sdkcheck:", err)
			os.Exit(2)
		}
		return
	}
	if *base == "" || *key == "" || *slowKey == "" || *fastKey == "" {
		fmt.Fprintln(os.Stderr, "sdkcheck: -base, -key, -slow-key and -fast-key are required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *ready != "" {
		if err := waitReady(ctx, *ready); err != nil {
			fmt.Fprintln(os.Stderr, "sdkcheck:", err)
			os.Exit(1)
		}
	}
	r := newRunner(ctx, os.Stdout, *base, *model)
	r.runAll(*key, *slowKey, *fastKey, *cutModel)
	if r.failed > 0 {
		fmt.Fprintf(os.Stdout, "%d of %d checks FAILED\n", r.failed, r.total)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stdout, "all %d checks passed\n", r.total)
}

// printFreePorts holds n loopback listeners at once (so the ports differ),
// prints their ports and closes them; go.sh starts its servers on them
// right after, a race only with another process binding the same
// ephemeral port in between.
func printFreePorts(w io.Writer, n int) error {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		out = append(out, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	}
	_, err := fmt.Fprintln(w, strings.Join(out, " "))
	return err
}

// waitReady polls url until it answers 200, for at most 30 s: the gateway
// was just started and builds its pools before it is ready.
func waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", url, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countingTransport counts every HTTP request the SDK sends through it,
// retries included: the SDK's retry loop calls the client once per attempt.
type countingTransport struct {
	next http.RoundTripper
	sent atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.sent.Add(1)
	return c.next.RoundTrip(req)
}

// runner runs the checks in order and prints one line for each.
type runner struct {
	ctx    context.Context
	out    io.Writer
	base   string
	model  string
	total  int
	failed int
}

func newRunner(ctx context.Context, out io.Writer, base, model string) *runner {
	return &runner{ctx: ctx, out: out, base: base, model: model}
}

// client is the SDK's client as a user builds it: base URL and key, the
// default retries (2) and backoff; extra options (a counting HTTP client)
// come after.
func (r *runner) client(key string, extra ...option.RequestOption) openai.Client {
	opts := append([]option.RequestOption{option.WithBaseURL(r.base), option.WithAPIKey(key)}, extra...)
	return openai.NewClient(opts...)
}

// check runs fn and prints its line; fn returns what it saw, or why the
// SDK's view differs from what OpenAI's API would give.
func (r *runner) check(name string, fn func() (string, error)) {
	r.total++
	detail, err := fn()
	if err != nil {
		r.failed++
		fmt.Fprintf(r.out, "FAIL %-34s | %v\n", name, err)
		return
	}
	fmt.Fprintf(r.out, "PASS %-34s | %s\n", name, detail)
}

func (r *runner) runAll(key, slowKey, fastKey, cutModel string) {
	c := r.client(key)
	r.chatChecks(c)
	if cutModel != "" {
		r.cutChecks(c, cutModel)
	}
	r.cacheReplayChecks(c)
	r.endpointChecks(c)
	r.responsesChecks(c)
	r.batchChecks(c)
	r.errorChecks(key)
	r.retryChecks(slowKey, fastKey)
}

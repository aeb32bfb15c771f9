package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Consul's blocking-query bounds and this source's pacing.
const (
	// DefaultConsulWait is a blocking query's wait when unset (Consul's
	// own default); the agent answers at once when the set changes, so
	// the wait only bounds how long a quiet query is held.
	DefaultConsulWait = 5 * time.Minute
	// DefaultConsulAddress is the agent's host:port when unset.
	DefaultConsulAddress = "127.0.0.1:8500"
	// MaxConsulWait is the longest wait Consul honours.
	MaxConsulWait = 10 * time.Minute
	// consulGap is the pause between an answer and the next query:
	// Consul's docs ask clients to rate-limit a resource that changes
	// often, and an agent that answers without holding must not become
	// a query loop; a tenth of the "within a second" budget.
	consulGap = 100 * time.Millisecond
	// consulSlack is added to wait + wait/16 (the jitter the agent may
	// add) to bound one query: a connection that died silently must not
	// hold the source for ever.
	consulSlack = 30 * time.Second
	// Backoff after failures: doubling from the first to the cap, each
	// wait drawn from its upper half.
	consulBackoffFirst = 500 * time.Millisecond
	consulBackoffCap   = 30 * time.Second
	// maxErrorText bounds an agent's error body in a log line.
	maxErrorText = 200
)

// ErrNoPassing: the service has no passing instance (or none with a
// usable address). Before any set it is a failure; after a set with
// backends it is held for emptyHold, as an empty DNS answer is, so a
// registry that briefly shows nothing (checks flapping together) does not
// empty the pool, then honoured (Consul.Run). An answer the ACL filtered
// stays a failure.
var ErrNoPassing = errors.New("no passing instance with an address and port")

// Jitter is the randomness a backoff draws from; injected so tests are
// repeatable. Float64 returns a number in [0, 1).
type Jitter interface {
	Float64() float64
}

// Consul finds a service's passing instances through the agent's health
// API (GET /v1/health/service/<Service>?passing) with blocking queries:
// each query carries the last X-Consul-Index as `index` and is held by the
// agent until the set changes or Wait passes, so a change arrives as soon
// as Consul knows it. Per Consul's docs on blocking queries, an index that
// goes backwards (a restored snapshot, a new leader) resets the next query
// to index 0, an index of 0 is taken as 1, and queries are paced
// (consulGap after each answer). An instance's address is Service.Address, or
// Node.Address when that is empty, on Service.Port; an instance whose
// address or port makes no URL is skipped. No passing instance is a
// failure (ErrNoPassing) before the first set, and one naming the ACL
// whenever the agent says it filtered the answer (a token without
// service:read gets an empty list, not a 403; retried as a refusal is);
// after a set with backends it is held (the sink told, when it is an
// UnsettledSink) and the agent asked afresh emptyHold later: none passing
// then either, the empty set is reported. A failed query (the agent down, a refused token) is
// reported and retried, without blocking,
// after a jittered, doubling backoff; the last set stands. The first set after a failure
// is reported even when unchanged, so the failure is seen to end.
type Consul struct {
	Service    string
	Tags       []string // every one must be on an instance
	Datacenter string   // "" = the agent's
	Address    string   // host:port of the agent; "" = 127.0.0.1:8500
	Scheme     string   // of the agent: http (default) or https
	// Token returns the ACL token for each query (so a rotated token
	// file is read again); nil or "" leaves the client library's default
	// (CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE). Never logged.
	Token    func() (string, error)
	Wait     time.Duration // 0 = DefaultConsulWait
	Template Template
	// HTTPClient talks to the agent; nil = one of the source's own, with
	// the library's TLS settings (CONSUL_CACERT and the other variables).
	HTTPClient *http.Client
	// After is time.After and Jitter the backoff's randomness,
	// injectable: the tests drive the pacing and the backoff.
	After  func(time.Duration) <-chan time.Time
	Jitter Jitter
}

// Run queries the agent until ctx ends, reporting each set that differs
// from the last.
func (c Consul) Run(ctx context.Context, sink Sink) {
	after, jitter := c.After, c.Jitter
	if after == nil {
		after = time.After
	}
	if jitter == nil {
		jitter = mathRand{}
	}
	client, closeIdle, err := c.client()
	if err != nil { // bad TLS settings in the environment: only a restart mends them
		sink.Fail(fmt.Errorf("consul %s: %w", c.Service, err))
		<-ctx.Done()
		return
	}
	defer closeIdle()
	var (
		last     []endpoint.Spec
		index    uint64
		failures int
		failed   bool // the last query was a failure: report the next set even if unchanged
		held     bool // an answer with no passing instance after a set was held: the next one decides
	)
	for {
		entries, meta, err := c.query(ctx, client, index)
		if ctx.Err() != nil {
			return
		}
		var set []endpoint.Spec
		if err == nil {
			set = consulSpecs(entries, c.Template)
			if len(set) == 0 && meta.ResultsFilteredByACLs {
				// A token that may not read the service (or its nodes)
				// gets an empty answer, not a 403. Say so, or the
				// operator looks for instances that are there; and
				// retry as after a refusal (backoff, a fresh read), so
				// a mended token is seen then, not when the index next
				// moves or the wait ends.
				err = fmt.Errorf("%w: the agent left out instances the ACL token may not read "+
					"(X-Consul-Results-Filtered-By-ACLs; the token needs service:read and node:read)", ErrNoPassing)
			}
		}
		pause := consulGap
		if err != nil {
			held = false
			failures, failed = failures+1, true
			sink.Fail(fmt.Errorf("consul %s: %w", c.Service, err))
			pause = backoff(failures, jitter)
			// The retry is a fresh read, not held at the old index: an
			// agent back with nothing changed would otherwise hold it
			// for the whole wait, and the failure would show as going
			// on for minutes after it ended.
			index = 0
		} else {
			failures = 0
			index = nextIndex(index, meta.LastIndex)
			switch {
			case len(set) == 0 && len(last) > 0 && !held:
				// Asked again afresh (not held at the index) once the
				// hold has passed.
				held, pause, index = true, emptyHold, 0
				unsettled(sink, fmt.Errorf("consul %s: %w; the %d backends are kept for %s unless one passes again",
					c.Service, ErrNoPassing, len(last), emptyHold))
			case len(set) == 0 && last != nil:
				if held || failed {
					held, failed, last = false, false, []endpoint.Spec{}
					sink.Update([]endpoint.Spec{})
				}
			case len(set) == 0:
				failed = true
				sink.Fail(fmt.Errorf("consul %s: %w", c.Service, ErrNoPassing))
			case failed || held || last == nil || !slices.Equal(set, last):
				held, failed, last = false, false, set
				sink.Update(slices.Clone(set))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-after(pause):
		}
	}
}

// nextIndex is the index of the next query after one sent with prev
// answered next, per Consul's docs: backwards resets to 0 (a fresh,
// non-blocking read), and 0 after a read is taken as 1 so the next query
// blocks instead of spinning.
func nextIndex(prev, next uint64) uint64 {
	switch {
	case next < prev:
		return 0
	case next == 0:
		return 1
	}
	return next
}

// backoff is the wait after the n-th failure in a row: the doubling step,
// capped, drawn from its upper half so many gateways do not retry in step.
func backoff(n int, jitter Jitter) time.Duration {
	step := consulBackoffCap
	if n < 16 {
		step = min(consulBackoffFirst<<(n-1), consulBackoffCap)
	}
	return step/2 + time.Duration(jitter.Float64()*float64(step/2))
}

// client is a client of the agent and a func that closes its idle
// connection (the source owns its transport: a stopped source leaves no
// connection behind).
func (c Consul) client() (*consul.Client, func(), error) {
	cfg := &consul.Config{Address: c.Address, Scheme: c.Scheme, HttpClient: c.HTTPClient}
	if cfg.Address == "" {
		cfg.Address = DefaultConsulAddress
	}
	if cfg.Scheme == "" {
		cfg.Scheme = DefaultScheme
	}
	closeIdle := func() {}
	if cfg.HttpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		cfg.Transport, closeIdle = tr, tr.CloseIdleConnections
	}
	client, err := consul.NewClient(cfg)
	return client, closeIdle, err
}

// query runs one (blocking, when index > 0) health query; its meta
// carries the answer's index and whether ACLs filtered it.
func (c Consul) query(ctx context.Context, client *consul.Client, index uint64) ([]*consul.ServiceEntry, consul.QueryMeta, error) {
	wait := c.Wait
	if wait <= 0 {
		wait = DefaultConsulWait
	}
	q := &consul.QueryOptions{Datacenter: c.Datacenter, WaitIndex: index, WaitTime: wait}
	if c.Token != nil {
		token, err := c.Token()
		if err != nil {
			return nil, consul.QueryMeta{}, err
		}
		q.Token = token
	}
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+consulSlack)
	defer cancel()
	entries, meta, err := client.Health().ServiceMultipleTags(c.Service, c.Tags, true, q.WithContext(ctx))
	if err != nil {
		return nil, consul.QueryMeta{}, shortError(err)
	}
	return entries, *meta, nil
}

// shortError bounds the agent's error body (the library quotes it whole)
// to what a log line should carry.
func shortError(err error) error {
	var se consul.StatusError
	if errors.As(err, &se) && len(se.Body) > maxErrorText {
		return fmt.Errorf("agent answered %d: %s…", se.Code, strings.ToValidUTF8(se.Body[:maxErrorText], ""))
	}
	return err
}

// consulSpecs turns health entries into backends, sorted by URL, each
// once; entries without a usable address or port are skipped.
func consulSpecs(entries []*consul.ServiceEntry, tmpl Template) []endpoint.Spec {
	scheme := tmpl.Scheme
	if scheme == "" {
		scheme = DefaultScheme
	}
	var out []endpoint.Spec
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		u, ok := instanceURL(scheme, host, e.Service.Port)
		if !ok || slices.ContainsFunc(out, func(s endpoint.Spec) bool { return s.URL == u }) {
			continue
		}
		spec := tmpl.Spec
		spec.URL = u
		out = append(out, spec.Normalized())
	}
	slices.SortFunc(out, func(a, b endpoint.Spec) int { return strings.Compare(a.URL, b.URL) })
	return out
}

// instanceURL is scheme://host:port when host is a bare host name or IP
// address, as Consul registers them; a host carrying a path, a user or a
// port of its own is refused: the registry is not trusted to shape URLs.
func instanceURL(scheme, host string, port int) (string, bool) {
	if host == "" || port < 1 || port > 65535 {
		return "", false
	}
	if net.ParseIP(host) == nil && strings.ContainsAny(host, "/?#@%[]:\\ \t\r\n") {
		return "", false
	}
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	u, err := url.Parse(scheme + "://" + hostport)
	if err != nil || u.Host != hostport || u.Hostname() != host {
		return "", false
	}
	return scheme + "://" + hostport, true
}

// TokenFile reads an ACL token from path at each call (a rotated file is
// picked up by the next query), trimmed of surrounding space.
func TokenFile(path string) func() (string, error) {
	return func() (string, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
		return token, nil
	}
}

// mathRand is the default Jitter.
type mathRand struct{}

func (mathRand) Float64() float64 { return rand.Float64() }

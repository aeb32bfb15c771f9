package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// dnsTimeout bounds one query (and its TCP retry when truncated).
const dnsTimeout = 5 * time.Second

// dnsFloor is the shortest wait between queries whatever the bounds say
// (a zero MinInterval must not become a query loop).
const dnsFloor = 100 * time.Millisecond

// ErrNoRecords: the name resolved to nothing usable (NXDOMAIN, no
// answer). After a set with backends it is held for emptyHold, then
// honoured (DNS.Run); before any set it is a failure: the name never
// resolved.
var ErrNoRecords = errors.New("no records")

// emptyHold is how long a successful empty answer (the resolver or the
// Consul agent answered: no address, no passing instance) after a set with
// backends is held back before it is honoured: the last set serves and the
// question is asked again after this long; empty then too, the empty set
// is the source's truth, as Envoy's STRICT_DNS clusters and
// consul-template take it, and as the Kubernetes source takes an empty
// Service after kubeSettle. Kept indefinitely (before 2026-12-06), the
// last addresses of a name or service taken down were sent requests (and
// their API key) for as long as the gateway ran, whoever held those
// addresses next. A failed lookup (SERVFAIL, a timeout, an agent down, an
// ACL-filtered answer) still keeps the last set: it says nothing of the
// backends.
const emptyHold = 10 * time.Second

// DNS resolves a name to backends and re-resolves it when the answer's TTL
// runs out, clamped to [MinInterval, MaxInterval] (a TTL of 0 must not
// become a query loop, a day-long TTL must not hide a change for a day).
// Record "SRV": each target of the lowest priority present (RFC 2782:
// higher ones are for when those are gone, which here is a new answer),
// with its port and its weight (0 counts as 1); the URL names the target
// host, which the upstream transport resolves. Record "A" (the default):
// the name's A and AAAA addresses, on Port (one of the two failing while
// the other answers: see resolve). The name is queried as written
// (fully qualified; no search domains). A failed query is a failure and
// is retried after a backoff: the step doubles from MinInterval to
// MaxInterval while the failure lasts, each wait drawn from the step's
// upper half (never below MinInterval), so gateways started together do
// not ask a recovering resolver in step; the last set stands. An empty
// answer (NXDOMAIN, or no record of the type) is a failure before the
// first set; after a set with backends it is held (the sink told, when it
// is an UnsettledSink) and the name asked again emptyHold later: empty
// again, the empty set is reported; any address meanwhile ends the hold.
type DNS struct {
	Name        string
	Record      string // "A" (A and AAAA) or "SRV"
	Port        int    // for A records
	Server      string // host:port of the resolver; "" = the first of /etc/resolv.conf
	MinInterval time.Duration
	MaxInterval time.Duration
	// Timeout bounds one query (with its TCP retry); 0 = dnsTimeout.
	Timeout  time.Duration
	Template Template
	// After is time.After and Jitter the backoff's randomness (nil =
	// math/rand), injectable: the tests drive re-resolution.
	After  func(time.Duration) <-chan time.Time
	Jitter Jitter
}

// Run resolves now, then again at every TTL, until ctx ends. After a
// failure it retries at MinInterval, doubling at each failure in a row up
// to MaxInterval (a resolver that is down is not asked every second for
// an hour); the first answer after failures is reported even when the
// set is unchanged, so the failure is seen to end.
func (d DNS) Run(ctx context.Context, sink Sink) {
	after, jitter := d.After, d.Jitter
	if after == nil {
		after = time.After
	}
	if jitter == nil {
		jitter = mathRand{}
	}
	var (
		last     []endpoint.Spec
		failures int
		held     bool // an empty answer after a set was held: the next one decides
	)
	for {
		set, ttl, err := d.resolve(ctx, last)
		wait := min(max(ttl, d.MinInterval), d.MaxInterval)
		// resolve returns ErrNoRecords bare only when every query was
		// answered: an empty answer, not a failure.
		empty := err == ErrNoRecords
		switch {
		case ctx.Err() != nil:
			return
		case empty && len(last) > 0 && !held:
			held, wait = true, emptyHold
			unsettled(sink, fmt.Errorf("dns %s %s: %w; the %d backends are kept for %s unless an address comes back",
				d.record(), d.Name, err, len(last), emptyHold))
		case empty && last != nil:
			if held || failures > 0 {
				held, failures, last = false, 0, []endpoint.Spec{}
				sink.Update([]endpoint.Spec{})
			}
		case err != nil:
			held = false
			failures++
			sink.Fail(fmt.Errorf("dns %s %s: %w", d.record(), d.Name, err))
			wait = d.retryWait(failures, jitter)
		case failures > 0 || held || last == nil || !slices.Equal(set, last):
			held, failures = false, 0
			last = set
			sink.Update(slices.Clone(set))
		}
		select {
		case <-ctx.Done():
			return
		case <-after(max(wait, dnsFloor)):
		}
	}
}

// retryWait is the wait after the n-th failure in a row: the step is
// MinInterval (at least dnsFloor) doubled n-1 times, at most MaxInterval;
// the wait is drawn from the step's upper half, as the Consul source's
// backoff, and is never below MinInterval (so the first retry is at
// MinInterval, the later ones spread).
func (d DNS) retryWait(n int, jitter Jitter) time.Duration {
	w := max(d.MinInterval, dnsFloor)
	for ; n > 1 && w < d.MaxInterval; n-- {
		w *= 2
	}
	step := max(min(w, d.MaxInterval), dnsFloor)
	return max(step/2+time.Duration(jitter.Float64()*float64(step/2)), d.MinInterval, dnsFloor)
}

// DefaultRecord is the record type asked for when unset: A (with AAAA).
const DefaultRecord = "A"

func (d DNS) record() string {
	if d.Record == "" {
		return DefaultRecord
	}
	return strings.ToUpper(d.Record)
}

// resolve is the set the name gives now, sorted, and the answer's
// smallest TTL. With record A, one of the A and AAAA queries may fail
// while the other answers: the answer stands alone unless last (the set
// in use) holds an address of the failed family, which a partial answer
// would drop (then it is a failure: last stands). So a resolver that
// always fails AAAA (some do, with SERVFAIL or NOTIMP) still gives the
// IPv4 backends, as getaddrinfo and Go's resolver do, and a transient
// AAAA failure never takes IPv6 backends away.
func (d DNS) resolve(ctx context.Context, last []endpoint.Spec) ([]endpoint.Spec, time.Duration, error) {
	server, err := d.server()
	if err != nil {
		return nil, 0, err
	}
	var (
		rrs      []dns.RR
		firstErr error
	)
	types := []uint16{dns.TypeA, dns.TypeAAAA}
	if d.record() == "SRV" {
		types = []uint16{dns.TypeSRV}
	}
	for _, t := range types {
		ans, err := query(ctx, server, dns.Fqdn(d.Name), t, cmp.Or(d.Timeout, dnsTimeout))
		switch {
		case err == nil:
			rrs = append(rrs, ans...)
			continue
		case firstErr != nil, ctx.Err() != nil, len(types) == 1, holdsFamily(last, t == dns.TypeA):
			return nil, 0, cmp.Or(firstErr, err)
		}
		firstErr = err
	}
	set, ttl := d.specs(rrs)
	if len(set) == 0 {
		return nil, 0, cmp.Or(firstErr, ErrNoRecords)
	}
	slices.SortFunc(set, func(a, b endpoint.Spec) int { return strings.Compare(a.URL, b.URL) })
	return set, ttl, nil
}

// holdsFamily says whether set has a backend at an IPv4 address (v4) or
// an IPv6 one (!v4).
func holdsFamily(set []endpoint.Spec, v4 bool) bool {
	for _, s := range set {
		u, err := url.Parse(s.URL)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil && (ip.To4() != nil) == v4 {
			return true
		}
	}
	return false
}

// specs turns answer records into backends: SRV targets of the lowest
// priority, or A/AAAA addresses.
func (d DNS) specs(rrs []dns.RR) ([]endpoint.Spec, time.Duration) {
	scheme := d.Template.Scheme
	if scheme == "" {
		scheme = DefaultScheme
	}
	lowest := uint16(1<<16 - 1)
	for _, rr := range rrs {
		if srv, ok := rr.(*dns.SRV); ok {
			lowest = min(lowest, srv.Priority)
		}
	}
	var out []endpoint.Spec
	ttl := time.Duration(-1)
	for _, rr := range rrs {
		spec := d.Template.Spec
		var host string
		port := d.Port
		switch r := rr.(type) {
		case *dns.A:
			host = r.A.String()
		case *dns.AAAA:
			host = r.AAAA.String()
		case *dns.SRV:
			if r.Priority != lowest || r.Target == "." {
				continue
			}
			host, port = strings.TrimSuffix(r.Target, "."), int(r.Port)
			spec.Weight = max(1, int(r.Weight))
		default: // a CNAME on the way: its TTL still bounds the answer
		}
		if t := time.Duration(rr.Header().Ttl) * time.Second; ttl < 0 || t < ttl {
			ttl = t
		}
		// A target name is any bytes the registry wrote ("a/b.test." is
		// host a, port 80, path /b.test:8000 once in a URL; "a\032b" is
		// a backend endpoint.New refuses): the answer names hosts, it
		// does not shape URLs (instanceURL, as for Consul).
		u, ok := instanceURL(scheme, host, port)
		if !ok {
			continue
		}
		spec.URL = u
		if !slices.ContainsFunc(out, func(s endpoint.Spec) bool { return s.URL == spec.URL }) {
			out = append(out, spec.Normalized())
		}
	}
	return out, max(ttl, 0)
}

func (d DNS) server() (string, error) {
	if d.Server != "" {
		return d.Server, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return "", fmt.Errorf("no resolver: %w", err)
	}
	if len(cc.Servers) == 0 {
		return "", errors.New("no resolver in /etc/resolv.conf")
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// exchange sends m to server over network and reads the answer. The
// client gets the timeout itself: without it miekg/dns bounds each read by
// its 2 s default whatever the context allows (a resolver answering in
// 2.2 s was a failure under the documented 5 s). And the connection is
// closed when ctx ends: miekg/dns takes only the context's deadline, so a
// source stopped (a reload, shutdown) while its resolver is silent would
// otherwise wait out the timeout, its owner with it.
func exchange(ctx context.Context, network, server string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	co, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	in, _, err := c.ExchangeWithConnContext(ctx, m, co)
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded): // the connection closed at the query's deadline
		return nil, fmt.Errorf("%s %s: no answer within %v: timeout", network, server, timeout)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return in, err
}

// query asks server for name's records of type t over UDP, again over TCP
// when the answer was truncated.
func query(ctx context.Context, server, name string, t uint16, timeout time.Duration) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.RecursionDesired = true
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := exchange(ctx, "udp", server, m, timeout)
	if err == nil && in.Truncated {
		in, err = exchange(ctx, "tcp", server, m, timeout)
	}
	if err != nil {
		return nil, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		// NXDOMAIN for one type (or both) is an empty answer; the caller
		// decides whether the whole answer is.
		return in.Answer, nil
	}
	return nil, fmt.Errorf("server %s answered %s", server, dns.RcodeToString[in.Rcode])
}

package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// ErrNoQueueMetrics fails a scrape whose body has neither a running nor a
// waiting series under the configured names: the backend is not the server
// the names were written for, and a reading of "0 queued" would be a lie
// that draws all traffic to it.
var ErrNoQueueMetrics = errors.New("no running or waiting metric in the exposition")

// maxDrain caps how much of an error response is read so the connection
// can be reused; a longer one is closed unread.
const maxDrain = 64 << 10

// maxPooledBuf keeps one huge exposition from pinning its buffer forever.
const maxPooledBuf = 1 << 20

// Scraper polls backends' metrics endpoints and stores a Load on each.
// Safe for concurrent use; normally one Run loop drives it. Its goroutines
// live only inside a ScrapeOnce call, which waits for them, so nothing
// outlives Run.
type Scraper struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	bufs   sync.Pool // *bytes.Buffer for bodies; one per concurrent scrape

	mu      sync.Mutex
	failing map[*endpoint.Backend]bool // last scrape failed; logs only on change
}

// NewScraper builds a Scraper. A nil client means http.DefaultClient; pass
// one with its own Transport to keep scrape connections apart from proxy
// traffic. A nil logger discards logs.
func NewScraper(cfg Config, client *http.Client, logger *slog.Logger) *Scraper {
	if client == nil {
		client = http.DefaultClient
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Scraper{
		cfg:     cfg.withDefaults(),
		client:  client,
		log:     logger,
		bufs:    sync.Pool{New: func() any { return new(bytes.Buffer) }},
		failing: make(map[*endpoint.Backend]bool),
	}
}

// Run scrapes every backend returned by backends at once and then every
// Interval, until ctx is done. backends is called each round so discovery
// and reloads are picked up. Run returns only after its scrapes have ended.
func (s *Scraper) Run(ctx context.Context, backends func() []*endpoint.Backend) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		s.ScrapeOnce(ctx, backends()) // failures are logged and leave the old Load to go stale
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// ScrapeOnce scrapes each listed backend once, at most Concurrency at a
// time, stores every successful reading with SetLoad and returns when all
// scrapes are done. A failed scrape leaves the backend's previous Load in
// place. The error joins the failures; nil means every scrape succeeded.
// Scrapes cut short by ctx store nothing and are not logged.
func (s *Scraper) ScrapeOnce(ctx context.Context, backends []*endpoint.Backend) error {
	list := s.track(backends)
	sem := make(chan struct{}, s.cfg.Concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, b := range list {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			l, err := s.scrape(ctx, b)
			if ctx.Err() != nil {
				return // aborted by our caller: says nothing about b
			}
			s.record(b, l, err)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("scrape round: %w", err)
	}
	return errors.Join(errs...)
}

// track returns backends without duplicates and forgets the failure state
// of backends no longer listed.
func (s *Scraper) track(backends []*endpoint.Backend) []*endpoint.Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return endpoint.Track(s.failing, backends, func(*endpoint.Backend) bool { return false })
}

// record stores a reading and logs when a backend's scrapes start or stop
// failing (not on every failure: a dead /metrics would log every second).
func (s *Scraper) record(b *endpoint.Backend, l endpoint.Load, err error) {
	switch {
	case err == nil && s.cfg.CapConcurrency:
		b.ObserveLoad(l, s.cfg.Now)
	case err == nil:
		b.SetLoad(l)
	}
	s.mu.Lock()
	was, tracked := s.failing[b]
	if tracked {
		s.failing[b] = err != nil
	}
	s.mu.Unlock()
	switch {
	case !tracked:
	case err != nil && !was:
		s.log.Warn("backend metrics scrape failing; its load reading will go stale",
			"backend", b.Name(), "stale_after", s.cfg.StaleAfter.String(),
			"error", s.cause(err), "detail", telemetry.Clip(err.Error()))
	case err == nil && was:
		s.log.Info("backend metrics scrape recovered", "backend", b.Name())
	}
}

// cause names why a scrape failed in a few stable words for the log's
// error field; Go's text, which repeats the URL, goes in detail.
func (s *Scraper) cause(err error) string {
	switch {
	case errors.Is(err, ErrNoQueueMetrics):
		return "no queue metrics in the answer"
	case errors.Is(err, errBodyTooLarge):
		return "answer over " + strconv.FormatInt(s.cfg.MaxBody, 10) + " bytes"
	}
	return telemetry.NetCause(err, s.cfg.Timeout)
}

// errBodyTooLarge is a metrics page longer than the scrape reads.
var errBodyTooLarge = errors.New("body too large")

// statusError is a scrape answered with a status other than 200.
type statusError struct {
	url    string
	status int
}

// HTTPStatus lets the failure log name the status alone (telemetry.NetCause).
func (e *statusError) HTTPStatus() int { return e.status }

func (e *statusError) Error() string {
	return fmt.Sprintf("scrape %s: unexpected status %d", e.url, e.status)
}

// metricsURL is the backend's base URL plus the metrics path, keeping the
// base URL's path prefix (as health probes do).
func metricsURL(b *endpoint.Backend, path string) string {
	t := b.Target()
	p, q, _ := strings.Cut(path, "?")
	u := url.URL{Scheme: t.Scheme, User: t.User, Host: t.Host, Path: t.Path + p, RawQuery: q}
	return u.String()
}

// scrape performs one GET and turns the body into a Load.
func (s *Scraper) scrape(ctx context.Context, b *endpoint.Backend) (endpoint.Load, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL(b, s.cfg.Path), nil)
	if err != nil {
		return endpoint.Load{}, fmt.Errorf("build scrape of %s: %w", b.Name(), err)
	}
	// Ask for the classic text format: prometheus_client would otherwise
	// be free to answer in protobuf.
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	req.Header.Set("User-Agent", "sluice-scrape")
	if key := b.Spec().APIKey; key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return endpoint.Load{}, fmt.Errorf("scrape %s: %w", req.URL.Redacted(), err)
	}
	// The backend counted its queue just before answering: what this
	// gateway has outstanding now is what that count already includes.
	inflight := b.Inflight()
	waitingStreams, waitingKV := b.WaitingStreams()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain)) // for reuse only; errors do not matter
		return endpoint.Load{}, &statusError{url: req.URL.Redacted(), status: resp.StatusCode}
	}

	buf := s.bufs.Get().(*bytes.Buffer)
	defer s.putBuf(buf)
	// Reading to EOF also drains the body, so the connection is reused.
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, s.cfg.MaxBody+1))
	if err != nil {
		return endpoint.Load{}, fmt.Errorf("scrape %s: read body: %w", req.URL.Redacted(), err)
	}
	if n > s.cfg.MaxBody {
		return endpoint.Load{}, fmt.Errorf("scrape %s: %w: exceeds %d bytes", req.URL.Redacted(), errBodyTooLarge, s.cfg.MaxBody)
	}

	r := parseExposition(buf.Bytes(), &s.cfg.Names)
	running, okR := r.running.value()
	waiting, okW := r.waiting.value()
	if !okR && !okW {
		return endpoint.Load{}, fmt.Errorf("scrape %s: %w (looked for %v and %v)",
			req.URL.Redacted(), ErrNoQueueMetrics, s.cfg.Names.Running, s.cfg.Names.Waiting)
	}
	kv, _ := r.kv.value()       // not reported: no pressure signal, not a failure
	bound, _ := r.bound.value() // not reported: no ceiling for the tenant ramp
	size, _ := r.kvSize.value() // not reported: the KV room is estimated from the running sequences
	now := s.cfg.Now()
	return endpoint.Load{
		Running:          running,
		Waiting:          waiting,
		KVCacheUsage:     min(kv, 1),
		BatchBound:       bound,
		KVCacheTokens:    size,
		At:               now,
		Expires:          now.Add(s.cfg.StaleAfter),
		InflightAtScrape: inflight,

		WaitingAtScrape:   waitingStreams,
		WaitingKVAtScrape: waitingKV,
	}, nil
}

func (s *Scraper) putBuf(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuf {
		return
	}
	b.Reset()
	s.bufs.Put(b)
}

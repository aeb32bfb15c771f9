package auth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// JWKSSettings are what a key set source is made from; a reload that
// changes none of them keeps the source and its keys.
type JWKSSettings struct {
	URL        string
	Refresh    time.Duration // periodic re-fetch
	MinRefresh time.Duration // at most one unknown-kid re-fetch per this
	Timeout    time.Duration // one fetch
	MaxBytes   int64         // the key set's body
}

// JWKSSettingsOf reads the settings from auth.jwt.
func JWKSSettingsOf(c config.JWT) JWKSSettings {
	return JWKSSettings{URL: c.JWKSURL, Refresh: c.JWKSRefresh.D(), MinRefresh: c.JWKSMinRefresh.D(),
		Timeout: c.JWKSTimeout.D(), MaxBytes: int64(c.JWKSMaxBytes)}
}

// JWKS is an issuer's key set, fetched from its URL and cached. It is
// fetched at start, every Refresh (every MinRefresh while fetches fail),
// and when a token names a kid it does not hold, or names none and no key
// held verifies it — at most once per MinRefresh, so made-up kids and
// signatures cost the issuer one fetch per interval however many arrive.
// Requests that find a fetch in progress wait for it instead of starting
// another. A failed fetch keeps the keys already held.
//
// Fetches go to the configured URL only (redirects are not followed, no
// proxy), bounded in time and body size. The JWKS owns its goroutines (the
// periodic refresh, a fetch in progress); Close stops and joins them.
type JWKS struct {
	set    JWKSSettings
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	keys    atomic.Pointer[keySet] // nil until a fetch succeeds (or keys are handed over)
	fetched atomic.Int64           // unix nanoseconds of the last fetch that succeeded; 0: none
	failing atomic.Bool            // the last fetch failed
	startup atomic.Bool            // made by the gateway's first build (MarkStartup)
	// handedOver: the keys held are those of the source this one
	// replaced (NewJWKSAfter); none of its own fetches has succeeded yet.
	handedOver atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	running     chan struct{} // closed when the fetch in progress ends; nil: none
	lastUnknown time.Time     // the last fetch an unknown kid caused
	closed      bool
}

// keySet is one fetched key set, with keyfunc's lookup over it. It is
// never written once stored (a fetch makes a new one), so a source that
// replaces another may serve it after the other is closed.
type keySet struct {
	kf keyfunc.Keyfunc
}

// NewJWKS fetches the key set once (waiting at most s.Timeout) and starts
// the periodic refresh. A first fetch that fails is logged, not fatal: the
// issuer may be down for a moment, and tokens are refused (reason
// keys_unavailable) until a fetch succeeds. now (nil: time.Now) decides the
// unknown-kid rate bound.
func NewJWKS(s JWKSSettings, log *slog.Logger, now func() time.Time) *JWKS {
	return NewJWKSAfter(nil, s, log, now)
}

// NewJWKSAfter is NewJWKS for a reload that replaces prev (nil: none)
// with a source of other settings. When the URL is prev's (only
// jwks_refresh, jwks_timeout, jwks_max_bytes or jwks_min_refresh
// changed), the keys prev holds are handed over: they verify tokens until
// the new source's own first fetch succeeds and replaces them, as a
// failed refresh keeps the keys held. A reload while the provider is down
// used to leave the issuer with no keys, every token 503, until the
// provider came back. A new URL is another provider: nothing is handed
// over. Only the immutable key set passes; prev keeps its goroutines and
// is closed by its owner as before.
func NewJWKSAfter(prev *JWKS, s JWKSSettings, log *slog.Logger, now func() time.Time) *JWKS {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	j := &JWKS{set: s, client: jwksClient(s), log: log, now: now}
	if prev != nil && prev.set.URL == s.URL {
		if ks := prev.current(); ks != nil {
			j.keys.Store(ks)
			j.fetched.Store(prev.fetched.Load())
			j.handedOver.Store(true)
		}
	}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	j.fetch()
	j.wg.Add(1)
	go j.refreshEvery()
	return j
}

// HandedOver reports that the keys j holds are those of the source it
// replaced (NewJWKSAfter): none of j's own fetches has succeeded yet.
func (j *JWKS) HandedOver() bool { return j.handedOver.Load() }

// MarkStartup marks j as the key set the gateway started with: while it
// has never been fetched, the replica is not ready (Verifier.KeySet).
// Called by its builder before any request can see j.
func (j *JWKS) MarkStartup() { j.startup.Store(true) }

// Settings are the settings j was made with.
func (j *JWKS) Settings() JWKSSettings { return j.set }

// Close stops the periodic refresh and any fetch in progress, and waits
// for both.
func (j *JWKS) Close() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	j.wg.Wait()
	j.client.CloseIdleConnections()
}

// refreshEvery re-fetches every Refresh, or every MinRefresh (if shorter)
// while the last fetch failed: an issuer that was down at the start, or
// when a refresh was due, is asked again within MinRefresh of its return,
// not an hour later, whatever tokens arrive meanwhile.
func (j *JWKS) refreshEvery() {
	defer j.wg.Done()
	for {
		d := j.set.Refresh
		if j.failing.Load() {
			d = min(d, j.set.MinRefresh)
		}
		t := time.NewTimer(d)
		select {
		case <-j.ctx.Done():
			t.Stop()
			return
		case <-t.C:
			j.refresh(j.ctx, false)
		}
	}
}

// Fetched is when the key set held was fetched; zero when none ever was.
func (j *JWKS) Fetched() time.Time {
	if n := j.fetched.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// current is the key set held, or nil.
func (j *JWKS) current() *keySet { return j.keys.Load() }

// refreshUnknown re-fetches because a token names a kid the set lacks:
// joins a fetch in progress, else starts one if the last such fetch was at
// least MinRefresh ago. It reports whether a fetch ran to its end (the
// caller looks again).
func (j *JWKS) refreshUnknown(ctx context.Context) bool {
	return j.refresh(ctx, true)
}

// refresh runs one fetch, or waits for the one in progress; unknown: it is
// caused by an unknown kid, so rate-bounded. The fetch itself runs on j's
// context, not ctx: a client that gives up does not cancel it for the
// others waiting.
func (j *JWKS) refresh(ctx context.Context, unknown bool) bool {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return false
	}
	done := j.running
	if done == nil {
		if unknown {
			now := j.now()
			if !j.lastUnknown.IsZero() && now.Sub(j.lastUnknown) < j.set.MinRefresh {
				j.mu.Unlock()
				return false
			}
			j.lastUnknown = now
		}
		done = make(chan struct{})
		j.running = done
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			j.fetch()
			j.mu.Lock()
			j.running = nil
			j.mu.Unlock()
			close(done)
		}()
	}
	j.mu.Unlock()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// fetch gets the key set and, when it parses, replaces the one held.
func (j *JWKS) fetch() {
	ctx, cancel := context.WithTimeout(j.ctx, j.set.Timeout)
	defer cancel()
	store, err := jwkset.NewStorageFromHTTP(j.set.URL, jwkset.HTTPClientStorageOptions{
		Client: j.client, Ctx: ctx, HTTPTimeout: j.set.Timeout,
		// No RefreshInterval: the library would start a refresh goroutine
		// nobody joins; refreshEvery is ours.
	})
	if err == nil {
		var kf keyfunc.Keyfunc
		kf, err = keyfunc.New(keyfunc.Options{Ctx: j.ctx, Storage: store, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
		if err == nil {
			j.keys.Store(&keySet{kf: kf})
			j.fetched.Store(j.now().UnixNano())
			j.failing.Store(false)
			j.handedOver.Store(false)
			return
		}
	}
	if j.ctx.Err() != nil {
		return // closing
	}
	j.failing.Store(true)
	msg := "jwt: key set fetch failed; keeping the keys held"
	if j.current() == nil {
		// Nothing held to keep: saying so had an operator believe tokens
		// were still verified.
		msg = "jwt: key set fetch failed; no keys held: bearer tokens are answered 503 auth_keys_unavailable until a fetch succeeds"
	}
	j.log.Warn(msg, "url", telemetry.RedactURL(j.set.URL), "error", jwksCause(err, j.set.Timeout), "detail", telemetry.Clip(err.Error()))
}

// jwksCause is NetCause, but for the status the key set's server
// answered: jwkset reports it as ErrInvalidHTTPStatusCode and the code
// after a colon (its documented "%w: %d"), no type to ask it of.
func jwksCause(err error, timeout time.Duration) string {
	if errors.Is(err, jwkset.ErrInvalidHTTPStatusCode) {
		text := err.Error()
		if code, cerr := strconv.Atoi(text[strings.LastIndex(text, ": ")+2:]); cerr == nil {
			return "status " + strconv.Itoa(code)
		}
		return "unexpected status (see detail)"
	}
	return telemetry.NetCause(err, timeout)
}

// jwksClient fetches the key set: the configured URL only (a redirect is
// answered as is, and its status is not 200), no proxy, a timeout per
// fetch, and a body bound.
func jwksClient(s JWKSSettings) *http.Client {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: s.Timeout}).DialContext,
		TLSHandshakeTimeout:   s.Timeout,
		ResponseHeaderTimeout: s.Timeout,
		MaxIdleConns:          1,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: boundedBody{tr, s.MaxBytes},
		Timeout:   s.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// boundedBody cuts response bodies at max bytes: reading past it fails,
// so an oversized key set is refused, not buffered.
type boundedBody struct {
	rt  *http.Transport
	max int64
}

func (b boundedBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, b.max)
	return resp, nil
}

func (b boundedBody) CloseIdleConnections() { b.rt.CloseIdleConnections() }

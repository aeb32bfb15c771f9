package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// maxDrain caps how much of a probe's body is read. Draining lets the
// connection be reused; a health endpoint that streams megabytes is not
// worth reading to the end, and closing it unread just costs a reconnect.
const maxDrain = 64 << 10

// probeURL is the backend's base URL plus the probe path. The base URL's
// path prefix is kept: backends mounted under /v1 or behind a path-routing
// proxy must be probed there too.
func probeURL(b *endpoint.Backend, path string) string {
	t := b.Target()
	p, q, _ := strings.Cut(path, "?")
	u := url.URL{Scheme: t.Scheme, User: t.User, Host: t.Host, Path: t.Path + p, RawQuery: q}
	return u.String()
}

// probe performs one GET and returns nil when the backend answered with an
// accepted status within the timeout.
func (c *Checker) probe(ctx context.Context, b *endpoint.Backend, path string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probeURL(b, path), nil)
	if err != nil {
		return fmt.Errorf("build probe: %w", err)
	}
	req.Header.Set("User-Agent", "sluice-health")
	if key := b.Spec().APIKey; key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return timedOut(ctx, fmt.Errorf("probe %s: %w", req.URL.Redacted(), err))
	}
	// Drain before Close so the keep-alive connection goes back to the pool.
	_, drainErr := io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	if !c.cfg.healthyStatus(resp.StatusCode) {
		return &statusError{url: req.URL.Redacted(), status: resp.StatusCode}
	}
	if drainErr != nil {
		// A body cut off by the timeout means the backend is not answering
		// in time, whatever the status line said.
		return timedOut(ctx, fmt.Errorf("probe %s: read body: %w", req.URL.Redacted(), drainErr))
	}
	return nil
}

// statusError is a probe answered with a status not counted as healthy.
type statusError struct {
	url    string
	status int
}

// HTTPStatus lets the failure log name the status alone (telemetry.NetCause).
func (e *statusError) HTTPStatus() int { return e.status }

func (e *statusError) Error() string {
	return fmt.Sprintf("probe %s: unexpected status %d", e.url, e.status)
}

// noSuchEndpoint reports whether err is an answer saying the probe path
// does not exist on the server (rather than that the server is unwell).
func noSuchEndpoint(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.status {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return true
	}
	return false
}

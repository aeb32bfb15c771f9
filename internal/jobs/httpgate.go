package jobs

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// HTTPGate asks a gateway's GET /spare whether its pool has spare capacity
// (nothing waiting in the admission queue, a slot free), polling until it
// has: separate workers then pull jobs only when they can run at once.
// /spare is on the gateway's admin listener, not the public one.
//
// A gateway that has no room (429) is asked again every Poll: room comes
// back within milliseconds. A gateway that is shutting down (503), that
// cannot be reached, or that refuses the token is asked again after a
// backoff doubling from Poll to MaxBackoff: it comes back in seconds, if
// at all, and polling it every Poll from every slot was hundreds of
// requests a second to nothing. Each change of that state is logged once,
// for all the slots (it was not logged at all: a worker waiting on a
// gateway that was gone said nothing).
type HTTPGate struct {
	Admin  string        // the gateway's admin base URL, e.g. http://127.0.0.1:9091
	Token  string        // admin.token, sent as a bearer token when set
	Client *http.Client  // default: a client with a 2s timeout
	Poll   time.Duration // default 25ms
	// MaxBackoff bounds the wait between two asks of a gateway that is
	// shutting down, unreachable or refusing the token, default 5s.
	MaxBackoff time.Duration
	// Log gets one line per change of the gateway's state, default none.
	Log *slog.Logger
	// After paces the polls, default time.After; tests inject it to see
	// the waits asked for and to end them.
	After func(d time.Duration) <-chan time.Time

	mu    sync.Mutex
	state gateState // last logged, shared by every slot
}

// gateState is what the last answer of /spare said of the gateway.
type gateState int

const (
	gateUp       gateState = iota // answered 200 or 429
	gateDraining                  // 503: shutting down
	gateDown                      // no answer: refused, unreachable, timed out
	gateRefused                   // 401/403: the token is wrong
	gateOther                     // any other answer
)

// Wait implements Gate. An unreachable gateway counts as no room.
func (g *HTTPGate) Wait(ctx context.Context, model string) error {
	client := g.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	poll := g.Poll
	if poll <= 0 {
		poll = 25 * time.Millisecond
	}
	maxBackoff := g.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	after := g.After
	if after == nil {
		after = time.After
	}
	u := strings.TrimRight(g.Admin, "/") + "/spare?model=" + url.QueryEscape(model)
	backoff := poll
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		if g.Token != "" {
			req.Header.Set("Authorization", "Bearer "+g.Token)
		}
		state, status := gateDown, 0
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			status = resp.StatusCode
			state = stateOf(status)
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		g.note(state, status, err)
		if status == http.StatusOK {
			return nil
		}
		wait := poll
		if state != gateUp {
			wait, backoff = backoff, min(backoff*2, maxBackoff)
		} else {
			backoff = poll
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-after(wait):
		}
	}
}

func stateOf(status int) gateState {
	switch status {
	case http.StatusOK, http.StatusTooManyRequests:
		return gateUp
	case http.StatusServiceUnavailable:
		return gateDraining
	case http.StatusUnauthorized, http.StatusForbidden:
		return gateRefused
	}
	return gateOther
}

// note logs the gateway's state when it changed since the last line.
func (g *HTTPGate) note(state gateState, status int, err error) {
	g.mu.Lock()
	changed := state != g.state
	g.state = state
	g.mu.Unlock()
	if !changed || g.Log == nil {
		return
	}
	switch state {
	case gateUp:
		g.Log.Info("gateway answering again: jobs run through it", "admin", g.Admin)
	case gateDraining:
		g.Log.Warn("gateway shutting down (503): no job is sent to it, asking again with backoff", "admin", g.Admin)
	case gateDown:
		g.Log.Warn("gateway unreachable: no job is sent to it, asking again with backoff", "admin", g.Admin, "err", err)
	case gateRefused:
		g.Log.Error("gateway refuses the worker's token: check --token against admin.worker_token (admin.token when that is unset)", "admin", g.Admin, "status", status)
	default:
		g.Log.Warn("gateway answers /spare unexpectedly, asking again with backoff", "admin", g.Admin, "status", status)
	}
}

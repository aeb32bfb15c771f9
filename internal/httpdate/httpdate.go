// Package httpdate keeps the Date header value of the current second,
// formatted once per second (nginx's ngx_cached_http_time) instead of by
// net/http on every answer: net/http formats its own Date (~0.9-1.4k
// instructions) unless the handler's header map has one. The gateway's
// own answers and relayed ones share the idea, each with its clock.
package httpdate

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Cache is the Date value of the latest second asked for. The value is
// immutable once published and swapped whole, so concurrent requests
// share it race-free. The zero value is ready.
type Cache struct{ cur atomic.Pointer[value] }

type value struct {
	sec int64
	v   []string // one element, cap 1: an Add to it copies, never writes into it
}

// At returns the Date value of t, byte for byte what net/http would send
// for t (http.TimeFormat, UTC), as a header value to set, not to modify.
// A second later than the one published replaces it; an earlier one (a
// request that read the clock before another's publish) is formatted for
// its caller and not published.
func (c *Cache) At(t time.Time) []string {
	sec := t.Unix()
	old := c.cur.Load()
	if old != nil && old.sec == sec {
		return old.v
	}
	d := &value{sec: sec, v: []string{t.UTC().Format(http.TimeFormat)}}
	if old == nil || sec > old.sec {
		c.cur.CompareAndSwap(old, d) // a lost race leaves another's value of the same or a later second
	}
	return d.v
}

// published reports the second of the published value (tests).
func (c *Cache) published() int64 {
	if v := c.cur.Load(); v != nil {
		return v.sec
	}
	return 0
}

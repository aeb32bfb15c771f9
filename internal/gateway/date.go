package gateway

import (
	"net/http"
	"sync/atomic"
	"time"
)

// dateCache is the Date header value of the current second, formatted
// once per second (nginx's ngx_cached_http_time) instead of by net/http
// on every answer: net/http formats its own Date (~1.4k instructions)
// unless the handler's header map has one. The value is immutable once
// published and swapped whole, so concurrent requests share it race-free.
type dateCache struct{ cur atomic.Pointer[dateValue] }

type dateValue struct {
	sec int64
	v   []string // one element, cap 1: an Add to it copies, never writes into it
}

// at returns the Date value of t, byte for byte what net/http would send
// for t (http.TimeFormat, UTC). A second later than the one published
// replaces it; an earlier one (a request that read the clock before
// another's publish) is formatted for its caller and not published.
func (c *dateCache) at(t time.Time) []string {
	sec := t.Unix()
	old := c.cur.Load()
	if old != nil && old.sec == sec {
		return old.v
	}
	d := &dateValue{sec: sec, v: []string{t.UTC().Format(http.TimeFormat)}}
	if old == nil || sec > old.sec {
		c.cur.CompareAndSwap(old, d) // a lost race leaves another's value of the same or a later second
	}
	return d.v
}

// stampDate puts the arrival's Date on an answer the chain writes itself
// before admission (a cache hit, a refusal); see guard for which requests
// have one. Without it net/http dates the answer at its write, as it does
// for relayed answers that carry no Date of the backend's. With the wall
// clock (send), the answer's send deadline starts at the arrival too,
// which it is written within the request's own CPU time of.
func (v *answerValues) stampDate(h http.Header) {
	if v != nil && v.date != nil {
		h["Date"] = v.date
		if v.send != nil {
			v.send.armAt(v.start)
		}
	}
}

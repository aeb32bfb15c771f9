package gateway

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// cacheBypassed honours the client's Cache-Control: no-store / no-cache.
func cacheBypassed(r *http.Request) bool {
	cc := strings.ToLower(r.Header.Get("Cache-Control"))
	return strings.Contains(cc, "no-store") || strings.Contains(cc, "no-cache")
}

// cacheLookup is the cache stage. It returns the request's cache key (""
// when the request is not cacheable or the cache is off) and whether it
// answered the request from the cache.
func (rt *Runtime) cacheLookup(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte,
	peek openai.Peek, tenant string, now time.Time) (key string, served bool, status int) {
	if rt.cache == nil {
		return "", false, 0
	}
	if !peek.Deterministic || cacheBypassed(r) {
		w.Header().Set("X-Cache", "BYPASS")
		return "", false, 0
	}
	k, cacheable, err := cache.Key(body, peek.Model, tenant, rt.Config.Cache.Shared)
	if err != nil || !cacheable {
		w.Header().Set("X-Cache", "BYPASS")
		return "", false, 0
	}
	if e, hit, _ := rt.cache.Get(ctx, k); hit {
		if status, ok := replay(w, e, peek, now); ok {
			return k, true, status
		}
	}
	w.Header().Set("X-Cache", "MISS")
	return k, false, 0
}

// replay answers from a cached entry in the shape the request asked for:
// a cached stream can answer a plain request and the reverse.
func replay(w http.ResponseWriter, e *cache.Entry, peek openai.Peek, now time.Time) (int, bool) {
	var data []byte
	var err error
	ct := e.ContentType
	switch {
	case e.Status != http.StatusOK:
		data = e.Body // cached client errors are replayed as they were
	case peek.Stream:
		data, err = e.ToSSE(peek.IncludeUsage)
		ct = "text/event-stream"
	case e.IsStream():
		data, err = e.ToJSON()
		ct = "application/json"
	default:
		data = e.Body
	}
	if err != nil || data == nil {
		return 0, false
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("X-Cache", "HIT")
	h.Set("Age", strconv.Itoa(e.Age(now)))
	w.WriteHeader(e.Status)
	w.Write(data)
	return e.Status, true
}

// cacheFill stores a relayed answer when it is complete and of a cacheable
// status. Streams count as complete only with their final [DONE].
func (rt *Runtime) cacheFill(ctx context.Context, key string, w http.ResponseWriter, res *proxy.Result, c *proxy.Capture, now time.Time) {
	if key == "" || c == nil || c.Over || res.Err != nil || !res.Written {
		return
	}
	ttl := cache.TTLFor(res.Status, rt.Config.Cache.TTL.D(), rt.Config.Cache.NegativeTTL.D())
	if ttl <= 0 {
		return
	}
	ct := w.Header().Get("Content-Type")
	raw := c.Buf.Bytes()
	e := &cache.Entry{Status: res.Status, ContentType: ct, Stored: now}
	if strings.HasPrefix(ct, "text/event-stream") {
		if !bytes.Contains(raw, []byte("data: [DONE]")) {
			return
		}
		e.Events = cache.ParseSSE(raw)
	} else {
		e.Body = bytes.Clone(raw)
	}
	rt.cache.Set(ctx, key, e, ttl)
}

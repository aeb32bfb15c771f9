package routing

import (
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// leastLoad picks the candidate with the lowest load score, built from the
// telemetry the scraper stored (endpoint.Load) and this gateway's own count
// of outstanding requests. Neither is enough alone: a scrape is a snapshot
// that goes stale at once, so every request sent until the next one would
// pile onto the backend that looked idle (a thundering herd); the gateway's
// count sees none of the other clients' load and nothing of KV-cache
// pressure. The score (see docs/ROUTING.md):
//
//	queue = max(running + waiting + (inflight - inflightAtScrape), 0)
//	score = queue / capacity + kv^2
//
// running, waiting and kv (KV-cache usage, 0..1) are the scraped values;
// inflight - inflightAtScrape is what this gateway sent to the backend since
// the scrape, less what finished, so each pick raises the picked backend's
// score at once. capacity is the backend's MaxConcurrency if configured,
// else defaultSlots x Weight: one full batch of queue costs 1. kv is squared
// because pressure grows sharply near full (preemption, then queueing),
// while a half-full cache (0.25) costs only about four queued requests.
//
// A backend with no fresh reading (never scraped, or its scrapes failing
// past endpoint.Load.Expires) is treated as saturated: it is chosen only
// when no candidate has a fresh reading. When none has, the policy falls
// back to least outstanding requests per unit of weight (least_conn).
//
// Scores within tieBand of the lowest are ties, broken at random: gateway
// replicas that read the same scrape must not all pick the same backend.
type leastLoad struct {
	rnd Rand
	now Clock
}

const (
	// defaultSlots is the concurrency assumed per unit of weight when a
	// backend has no MaxConcurrency: the simulator's and a small vLLM
	// deployment's batch size. It only sets how many queued requests
	// weigh as much as a full KV cache.
	defaultSlots = 16
	// tieBand is less than one request's worth at defaultSlots (1/16), so
	// one more queued request still decides between two backends.
	tieBand = 0.05
)

func (p *leastLoad) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	if len(c) == 1 {
		return c[0]
	}
	now := p.now()
	var stack [32]float64 // pools are small; Pick runs per request
	scores := stack[:0]
	fresh := 0
	for _, b := range c {
		s, ok := loadScore(b, now)
		if ok {
			fresh++
		} else {
			s = math.Inf(1) // stale counts as saturated
		}
		scores = append(scores, s)
	}
	band := tieBand
	if fresh == 0 {
		// No telemetry to trust: fall back to what this gateway knows.
		for i, b := range c {
			scores[i] = float64(b.Inflight()) / float64(b.Weight())
		}
		band = 0
	}
	return pickLowest(p.rnd, c, scores, band)
}

// loadScore is the score above; ok is false when b has no fresh reading.
func loadScore(b *endpoint.Backend, now time.Time) (score float64, ok bool) {
	l, ok := b.Load()
	if !ok || !l.Fresh(now) {
		return 0, false
	}
	sent := float64(b.Inflight() - l.InflightAtScrape)
	queue := max(l.Running+l.Waiting+sent, 0)
	return queue/capacity(b) + l.KVCacheUsage*l.KVCacheUsage, true
}

func capacity(b *endpoint.Backend) float64 {
	if m := b.Spec().MaxConcurrency; m > 0 {
		return float64(m)
	}
	return float64(defaultSlots * b.Weight())
}

// pickLowest returns, uniformly at random, one of the candidates whose
// score is within band of the lowest.
func pickLowest(rnd Rand, c []*endpoint.Backend, scores []float64, band float64) *endpoint.Backend {
	lo := math.Inf(1)
	for _, s := range scores {
		lo = min(lo, s)
	}
	ties := 0
	for _, s := range scores {
		if s <= lo+band {
			ties++
		}
	}
	k := 0
	if ties > 1 {
		k = rnd.IntN(ties)
	}
	for i, s := range scores {
		if s <= lo+band {
			if k == 0 {
				return c[i]
			}
			k--
		}
	}
	return c[0] // unreachable: the lowest score is within band of itself
}

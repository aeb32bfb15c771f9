package gateway

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// TestCoalescedFollowerToldTheStoredLifetime: two keys of one tenant share
// a flight and its entry, their rules give 1m (k1) and 5m (k2). The
// flight stores the answer under its leader's rule. Led by k1, the entry
// lives a minute; before, its follower k2 was told max-age=300, and so
// was a HIT of k2 at 30 s (an entry without stale-while-revalidate kept
// no freshness of its own), while at 61 s the gateway no longer had it
// (a MISS). Now the follower and the hit are told the entry's minute, as
// a hit was with stale-while-revalidate. Led by k2, the k1 follower is
// told its own (shorter) minute and k2 its five, as before.
func TestCoalescedFollowerToldTheStoredLifetime(t *testing.T) {
	type step struct {
		at               time.Duration
		key, xcache, age string
		cc               string
	}
	for _, tc := range []struct {
		name                 string
		leader, follower     string
		leaderCC, followerCC string
		after                []step
	}{
		{"leader with the shorter rule", "k1", "k2", "private, max-age=60", "private, max-age=60", []step{
			{30 * time.Second, "k2", "HIT", "30", "private, max-age=60"},
			{61 * time.Second, "k2", "MISS", "", "private, max-age=300"},
		}},
		{"leader with the longer rule", "k2", "k1", "private, max-age=300", "private, max-age=60", []step{
			{30 * time.Second, "k1", "HIT", "30", "private, max-age=60"},
			{120 * time.Second, "k2", "HIT", "120", "private, max-age=300"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &gatedStream{release: make(chan struct{})}
			cfg := testConfig(httptestServer(t, be))
			cfg.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "t"}, {Key: "k2", Tenant: "t"}}
			cfg.Cache.Rules = []config.CacheRule{
				{Keys: []string{"k1"}, TTL: config.Duration(time.Minute)},
				{Keys: []string{"k2"}, TTL: config.Duration(5 * time.Minute)},
			}
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clock := new(atomic.Int64)
			clock.Store(start.UnixNano())
			url, gw := startCachingGatewayCfg(t, cfg, nil, func() time.Time { return time.Unix(0, clock.Load()) })
			openAtCleanup(t, be.release)
			body := fmt.Sprintf(detBody, `,"stream":true`)
			type answer struct {
				xcache, cc string
				status     int
			}
			send := func(key string, out chan<- answer) {
				resp := post(t, url, body, "Authorization", "Bearer "+key)
				readAll(t, resp)
				out <- answer{resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Control"), resp.StatusCode}
			}
			lead, follow := make(chan answer, 1), make(chan answer, 1)
			go send(tc.leader, lead)
			waitFlight(t, gw, 1)
			go send(tc.follower, follow)
			waitFlight(t, gw, 2)
			close(be.release)
			l, f := <-lead, <-follow
			if l.xcache != "MISS" || f.xcache != "COALESCED" || l.cc != tc.leaderCC || f.cc != tc.followerCC {
				t.Fatalf("leader %s: %+v, follower %s: %+v; want MISS %q, COALESCED %q", tc.leader, l, tc.follower, f, tc.leaderCC, tc.followerCC)
			}
			for i, s := range tc.after {
				clock.Store(start.Add(s.at).UnixNano())
				resp := post(t, url, body, "Authorization", "Bearer "+s.key)
				readAll(t, resp)
				h := resp.Header
				if resp.StatusCode != http.StatusOK || h.Get("X-Cache") != s.xcache || h.Get("Age") != s.age || h.Get("Cache-Control") != s.cc {
					t.Errorf("step %d at %v (%s): %d X-Cache %q Age %q Cache-Control %q, want %s %q %q", i, s.at, s.key,
						resp.StatusCode, h.Get("X-Cache"), h.Get("Age"), h.Get("Cache-Control"), s.xcache, s.age, s.cc)
				}
			}
		})
	}
}

package jobs

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// putClaim writes a claim of owner ending until (its lease lease) at key,
// as a process whose clock is ahead of the test's would.
func putClaim(t *testing.T, s *Store, key, owner string, until time.Time, lease time.Duration) {
	t.Helper()
	b, _ := json.Marshal(fileClaim{Owner: owner, Until: until.UnixMilli(), Lease: lease.Milliseconds()})
	if _, err := s.jobs.Put(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
}

// finishedUnder makes j finished with its webhook pending under owner,
// as if owner had sent it and then gone silent.
func finishedUnder(t *testing.T, s *Store, j *Job, owner string) {
	t.Helper()
	if _, _, err := s.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
		r.Job.Status, r.Job.FinishedAt = StatusSucceeded, s.now().Unix()
		r.HookOwner = owner
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A process whose clock ran a year fast wrote the sweep lease and its
// heartbeat, then died. Before, both held until their until_ms: no
// process swept again (no pending webhook or batch event resent by
// anyone) and its own pending webhook counted as having a live sender,
// for the year. Now a claim ending more than two leases ahead of the
// reader's clock is lapsed: the live process takes the lease and resends
// it. A claim only seconds ahead (a writer's clock slightly fast) still
// holds: that process's webhook is not resent beside it.
func TestFarAheadClaimsLapse(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := newClock()
	target := newHookCounts(t, nil)
	s := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) { o.Now = c.Now }))
	waitSweeps(t, s, 1)

	const lease = DefaultWebhookLease
	yearFast, secondsFast := "gw-year-fast", "gw-seconds-fast"
	putClaim(t, s, webhookSweepKey, yearFast, c.Now().Add(365*24*time.Hour+lease), lease)
	putClaim(t, s, heartbeatKey(yearFast), yearFast, c.Now().Add(365*24*time.Hour+lease), lease)
	putClaim(t, s, heartbeatKey(secondsFast), secondsFast, c.Now().Add(lease+20*time.Second), lease)
	far, near := submitHooked(t, s, target.URL+"/hook"), submitHooked(t, s, target.URL+"/hook")
	finishedUnder(t, s, far, yearFast)
	finishedUnder(t, s, near, secondsFast)

	waitWebhook(t, s, far.ID, "delivered") // the clock has not moved
	waitSweeps(t, s, 3)
	if n, m := target.count(far.ID), target.count(near.ID); n != 1 || m != 0 {
		t.Fatalf("deliveries: the year-fast process's webhook %d (want 1), the seconds-fast one's %d (want 0: its sender is alive)", n, m)
	}
	e, err := s.jobs.Get(context.Background(), webhookSweepKey)
	if err != nil {
		t.Fatal(err)
	}
	if cl, ok := readClaim(e.Value()); !ok || cl.Owner != s.owner {
		t.Fatalf("sweep lease %s, want held by the live process %s", e.Value(), s.owner)
	}
}

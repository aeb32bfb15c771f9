package jobs

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Webhook outcomes the store refuses to record are held for another
// write, up to a bound, and both show: sluice_jobs_webhook_outcomes_held
// against its _limit, and sluice_jobs_webhook_outcomes_dropped_total for
// those past it (their webhooks will be sent again). Here the bound is 1
// and two outcomes meet a full store: one held, one dropped; the held one
// is written once there is room. Before, neither the held outcomes nor
// the dropped ones were in any metric.
func TestWebhookOutcomesHeldAreBoundedAndCounted(t *testing.T) {
	srv := startBoundedServer(t, 128<<10)
	c := newClock()
	reg := prometheus.NewRegistry()
	inFlight, filled := make(chan struct{}, 2), make(chan struct{})
	// Two destinations, so that both webhooks are being delivered (their
	// claims written) before the store fills; each answered once the
	// store refuses every write.
	var targets [2]*hookCounts
	for i := range targets {
		targets[i] = newHookCounts(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			inFlight <- struct{}{}
			<-filled
		})
	}
	s := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) { o.Now, o.Registerer = c.Now, reg }))
	s.hooks.mu.Lock()
	s.hooks.maxHeld = 1
	s.hooks.mu.Unlock()
	var ids []string
	for _, target := range targets {
		j := submitHooked(t, s, target.URL+"/hook")
		if _, _, err := s.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
			r.Job.Status, r.Job.FinishedAt = StatusSucceeded, s.now().Unix()
			r.HookOwner = "gone-process" // finished by a process that died: resent by the sweep
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if _, err := s.hooks.sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-inFlight
	<-inFlight
	fillStore(t, s)
	close(filled)
	metrics := func() string { return gather(t, reg, "sluice_jobs_webhook_outcomes_") }
	want := "sluice_jobs_webhook_outcomes_dropped_total 1\nsluice_jobs_webhook_outcomes_held 1\nsluice_jobs_webhook_outcomes_held_limit 1\n"
	eventually(t, "one outcome held, one dropped", func() bool { return metrics() == want })
	if n := targets[0].count(ids[0]) + targets[1].count(ids[1]); n != 2 {
		t.Fatalf("%d deliveries, want 2", n)
	}
	bodies, err := s.js.Stream(t.Context(), "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := bodies.Purge(t.Context(), jetstream.WithPurgeSubject("$KV."+bodiesBucket+".fill.>")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the held outcome written", func() bool {
		return strings.Contains(metrics(), "sluice_jobs_webhook_outcomes_held 0\n")
	})
}

// gather is reg's samples named prefix..., one "name value" line each
// (the metrics asked for have no labels).
func gather(t *testing.T, reg *prometheus.Registry, prefix string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			fmt.Fprintf(&b, "%s %g\n", mf.GetName(), m.GetGauge().GetValue()+m.GetCounter().GetValue())
		}
	}
	return b.String()
}

package jobs

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// outageGate takes NATS down when the worker asks for a model, that is
// after it has taken a message and read its record, before it starts it.
type outageGate struct {
	once sync.Once
	down func()
}

func (g *outageGate) Wait(ctx context.Context, model string) error {
	if model != "" {
		g.once.Do(g.down)
	}
	return ctx.Err()
}

// A worker that loses NATS while it holds a message keeps it and carries
// on as soon as NATS is back: a nak sent into the outage would be lost and
// the job would wait out AckWait (a result not recorded would also run the
// job again). AckWait is two minutes here, far beyond the test's patience.
func TestWorkerHoldsJobThroughNATSOutage(t *testing.T) {
	for _, step := range []string{"starting job", "recording job result"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			first, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(first.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			_, portStr, _ := net.SplitHostPort(u.Host)
			port, _ := strconv.Atoi(portStr)
			var back *Embedded // shut down after the Store is closed
			t.Cleanup(func() {
				first.Shutdown()
				if back != nil {
					back.Shutdown()
				}
			})
			o := testOptions(first.ClientURL())
			o.AckWait = 2 * time.Minute
			s := openStore(t, o)

			// down returns once the client knows (its next call fails at
			// once), so the worker's step fails before NATS can be back.
			wentDown := make(chan struct{})
			down := func() {
				lost := s.nc.StatusChanged(nats.RECONNECTING)
				first.Shutdown()
				select {
				case <-lost:
				case <-time.After(20 * time.Second):
				}
				close(wentDown)
			}
			var calls atomic.Int64
			wo := WorkerOptions{Executor: okExec(&calls)}
			if step == "starting job" {
				wo.Gate = &outageGate{down: down}
			} else {
				wo.Executor = execFunc(func(ctx context.Context, j *Job) (Result, error) {
					if calls.Add(1) == 1 {
						down()
					}
					return Result{StatusCode: 200, Body: []byte(`{"ok":true}`)}, nil
				})
			}
			startWorker(t, s, wo)

			j, _, err := s.Submit(t.Context(), Spec{Tenant: "t", Model: "m", Path: "/v1/chat/completions", Body: []byte(`{"model":"m"}`)})
			if err != nil {
				t.Fatal(err)
			}
			<-wentDown
			if s.Available() == nil {
				t.Fatal("the client did not notice the outage")
			}
			if back, err = StartEmbedded(EmbeddedOptions{Dir: dir, Port: port}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the job to succeed", func() bool {
				got, err := s.Job(t.Context(), "t", j.ID)
				return err == nil && got.Status == StatusSucceeded
			})
			if n := calls.Load(); n != 1 {
				t.Fatalf("executed %d times, want 1", n)
			}
			if got := mustJob(t, s, "t", j.ID); got.Attempts != 1 {
				t.Fatalf("attempts %d, want 1", got.Attempts)
			}
		})
	}
}

// A worker started while NATS is away waits for it, then takes jobs: a
// gateway whose NATS blinked while its workers were starting must not be
// left without workers.
func TestWorkerStartsWhenNATSIsBack(t *testing.T) {
	dir := t.TempDir()
	first, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(u.Host)
	port, _ := strconv.Atoi(portStr)
	var back *Embedded // shut down after the Store is closed
	t.Cleanup(func() {
		first.Shutdown()
		if back != nil {
			back.Shutdown()
		}
	})
	s := openStore(t, testOptions(first.ClientURL()))

	lost := s.nc.StatusChanged(nats.RECONNECTING)
	first.Shutdown()
	<-lost
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)}) // its consumers cannot be created now
	if back, err = StartEmbedded(EmbeddedOptions{Dir: dir, Port: port}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Store to reconnect", func() bool { return s.Available() == nil })
	j, _, err := s.Submit(t.Context(), Spec{Tenant: "t", Model: "m", Path: "/v1/chat/completions", Body: []byte(`{"model":"m"}`)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job to succeed", func() bool {
		got, err := s.Job(t.Context(), "t", j.ID)
		return err == nil && got.Status == StatusSucceeded
	})
}

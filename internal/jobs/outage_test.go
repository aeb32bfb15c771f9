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
// job again). AckWait is a minute here, three times the patience of
// eventually, so a lost nak fails the test; yet a delivery lost with the
// connection as the server goes down only costs the test a minute instead
// of hanging it.
func TestWorkerHoldsJobThroughNATSOutage(t *testing.T) {
	for _, step := range []string{"starting job", "recording job result"} {
		t.Run(step, func(t *testing.T) {
			n := newRestartableNATS(t)
			first := n.first
			o := testOptions(first.ClientURL())
			o.AckWait = time.Minute
			s := openStore(t, o)

			// down returns once the client knows (its next call fails at
			// once), so the worker's step fails before NATS can be back.
			// It runs on the worker's goroutine: it only reports, the
			// test goroutine judges.
			reached := make(chan struct{})
			wentDown := make(chan bool, 1) // whether the client noticed
			down := func() {
				close(reached)
				lost := s.nc.StatusChanged(nats.RECONNECTING)
				first.Shutdown()
				select {
				case <-lost:
					wentDown <- true
				case <-time.After(outagePatience):
					wentDown <- false
				}
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
			workerDone := runWorker(t, s, wo)

			j, _, err := s.Submit(t.Context(), Spec{Tenant: "t", Model: "m", Path: "/v1/chat/completions", Body: []byte(`{"model":"m"}`)})
			if err != nil {
				t.Fatal(err)
			}
			// The worker takes NATS down once it holds the message. It
			// may never get there: RunWorker gave up, or the message is
			// lost to the worker until AckWait brings it back.
			select {
			case <-reached:
			case err := <-workerDone:
				t.Fatalf("RunWorker returned before the worker took the job (err %v)", err)
			case <-time.After(o.AckWait + outagePatience):
				t.Fatalf("the worker did not reach the %s step within AckWait (%s) + %s", step, o.AckWait, outagePatience)
			}
			select {
			case noticed := <-wentDown:
				if !noticed || s.Available() == nil {
					t.Fatalf("the client did not notice the outage within %s", outagePatience)
				}
			case <-time.After(2 * outagePatience):
				t.Fatalf("the embedded NATS server did not shut down within %s", 2*outagePatience)
			}
			if err := n.restart(); err != nil {
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
	n := newRestartableNATS(t)
	first := n.first
	s := openStore(t, testOptions(first.ClientURL()))

	lost := s.nc.StatusChanged(nats.RECONNECTING)
	first.Shutdown()
	select {
	case <-lost:
	case <-time.After(outagePatience):
		t.Fatalf("the client did not notice the outage within %s", outagePatience)
	}
	var calls atomic.Int64
	workerDone := runWorker(t, s, WorkerOptions{Executor: okExec(&calls)}) // its consumers cannot be created now
	if err := n.restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Store to reconnect", func() bool { return s.Available() == nil })
	j, _, err := s.Submit(t.Context(), Spec{Tenant: "t", Model: "m", Path: "/v1/chat/completions", Body: []byte(`{"model":"m"}`)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job to succeed", func() bool {
		select {
		case err := <-workerDone:
			t.Fatalf("RunWorker returned while NATS was away or just back (err %v)", err)
		default:
		}
		got, err := s.Job(t.Context(), "t", j.ID)
		return err == nil && got.Status == StatusSucceeded
	})
}

// outagePatience bounds each wait on the client or the worker in these
// tests: generous for a loaded machine, short of the package's timeout.
const outagePatience = 30 * time.Second

// runWorker runs s.RunWorker with fast polling until the test ends. Its
// channel yields what RunWorker returned if it returns before then, which a
// test waiting on the worker must watch: a worker gone early would
// otherwise leave it waiting for nothing. The cleanup waits for RunWorker,
// at most outagePatience plus its Grace.
func runWorker(t *testing.T, s *Store, o WorkerOptions) <-chan error {
	t.Helper()
	o.PollWait, o.Grace = 100*time.Millisecond, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	early := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		early <- s.RunWorker(ctx, o)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(outagePatience + o.Grace):
			t.Errorf("RunWorker did not return within %s of being stopped", outagePatience+o.Grace)
			return
		}
		select {
		case err := <-early:
			if err != nil {
				t.Errorf("RunWorker: %v", err)
			}
		default: // taken by the test, which reported it
		}
	})
	return early
}

// restartableNATS is an embedded server that can be shut down and started
// again on the same port and store, as an external NATS restarts.
type restartableNATS struct {
	first, back *Embedded // back: the restarted server, shut down after the Store is closed
	dir         string
	port        int
}

func newRestartableNATS(t *testing.T) *restartableNATS {
	t.Helper()
	n := &restartableNATS{dir: t.TempDir()}
	var err error
	if n.first, err = StartEmbedded(EmbeddedOptions{Dir: n.dir, Port: -1}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(n.first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(u.Host)
	n.port, _ = strconv.Atoi(portStr)
	t.Cleanup(func() {
		n.first.Shutdown()
		if n.back != nil {
			n.back.Shutdown()
		}
	})
	return n
}

// restart starts the server again on the first one's port and store.
func (n *restartableNATS) restart() (err error) {
	n.back, err = StartEmbedded(EmbeddedOptions{Dir: n.dir, Port: n.port})
	return err
}

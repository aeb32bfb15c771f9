package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Creating the queue's streams and buckets on a NATS cluster races when
// several gateways start together (a rollout, a restart of every
// replica): two requests creating the same stream or bucket at once are
// both carried out, but the cluster answers neither of them
// (nats-io/nats.go#949, nats-io/nats-server#3677). Without a bound of its
// own each call then waited out the whole start-up context (30 s) and the
// gateway retried the whole setup later, in step with the other gateways,
// colliding on the next object: measured with two gateways on a fresh
// three-node cluster, the queue stayed unavailable for minutes, one
// stream or bucket made per 30 s attempt.
//
// So each call gets its own deadline, provisionFirst doubling up to the
// request timeout, and one that times out is asked again while the
// caller's context lasts: the object is usually there by then, and the
// second call (an update with the same config) answers at once.
const provisionFirst = time.Second

// provision runs call, each attempt bounded as above; what is retried is a
// timeout only (no answer), never an error the server sent back.
func provision(ctx context.Context, limit time.Duration, call func(context.Context) error) error {
	wait := min(provisionFirst, limit)
	for {
		actx, cancel := context.WithTimeout(ctx, wait)
		err := call(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !noAnswer(err) {
			return err
		}
		wait = min(2*wait, limit)
	}
}

// noAnswer reports whether err says only that no answer came in time.
func noAnswer(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// A node leaving a NATS cluster takes with it the leadership of the
// streams it led; the others elect new leaders after their election
// timeout (measured: about 5 s). Meanwhile a write to such a stream
// finds no responder and fails (jetstream.ErrNoStreamResponse, after the
// client's own two retries 250 ms apart): with a three-node cluster and
// one node killed, 117 of 372 async submissions in 6 s got a 503
// queue_unavailable, each after 0.5 s. Such a write reached no stream and
// stored nothing, so it may be sent again; leaderWait spaces the tries.
const leaderWait = 250 * time.Millisecond

// whileLeaderless runs call, and again while it fails only because no
// stream leader took the write, for up to limit from the first failure
// (and while ctx lasts). Other errors, and a success, end it at once.
// found, when not nil, is told of each such failure before the wait (a
// test's hook: Store.leaderless).
func whileLeaderless(ctx context.Context, limit time.Duration, found func(), call func() error) error {
	err := call()
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTimer(leaderWait)
	defer t.Stop()
	for errors.Is(err, jetstream.ErrNoStreamResponse) {
		if found != nil {
			found()
		}
		select {
		case <-lctx.Done():
			return err
		case <-t.C:
		}
		err = call()
		t.Reset(leaderWait)
	}
	return err
}

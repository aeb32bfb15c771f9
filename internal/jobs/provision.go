package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
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

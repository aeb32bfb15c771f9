package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// A class whose durable consumer cannot be created (another consumer
// already filters its subject on the work-queue stream, nats-server
// cannot create the consumer's store, ...) used to stop RunWorker: it
// returned the error, and every class's workers stopped with that one.
// Now that class alone waits: RunWorker starts with the others, logs one
// ERROR line, reports the class (sluice_jobs_worker_classes_down, /status
// jobs.classes_down) and tries again with a backoff, from
// classRetryFirst doubling to classRetryMax; once the consumer is made
// and a pull on it answered, one INFO line, and the class is taken like
// the others from then on.
// NATS away is not such a failure: RunWorker waits for it as before.

const (
	classRetryFirst = time.Second
	classRetryMax   = time.Minute
)

// classesDown is a Store's classes whose consumer a worker cannot create.
type classesDown struct {
	mu   sync.Mutex
	down map[string]*classDown
}

type classDown struct {
	since   time.Time
	err     string // the latest attempt's
	workers int    // RunWorker calls retrying it
}

// mark records a worker's failed attempt at class's consumer.
func (c *classesDown) mark(class string, now time.Time, err error, first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down == nil {
		c.down = map[string]*classDown{}
	}
	d := c.down[class]
	if d == nil {
		d = &classDown{since: now}
		c.down[class] = d
	}
	if first {
		d.workers++
	}
	d.err = err.Error()
}

// clear records that a worker retries class no more: made, or stopped.
func (c *classesDown) clear(class string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.down[class]; d != nil {
		if d.workers--; d.workers <= 0 {
			delete(c.down, class)
		}
	}
}

func (c *classesDown) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.down)
}

// text is the classes down for /status, "" if none: class, since when,
// the latest error; by class name.
func (c *classesDown) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.down))
	for name := range c.down {
		names = append(names, name)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, name := range names {
		d := c.down[name]
		parts[i] = fmt.Sprintf("%s: consumer cannot be created since %s, its jobs wait: %s", name, d.since.UTC().Format(time.RFC3339), d.err)
	}
	return strings.Join(parts, "; ")
}

// retryConsumer creates class's consumer (the dispatcher's class i),
// which RunWorker could not (err), with a backoff on the worker's timer,
// and tells the dispatcher on up once it is made. The class is back only
// once a pull on it is answered without a 503 (events: true): a consumer
// can be made whose pulls keep getting 503 (a consumer without a leader
// in a cluster whose meta group answers), and the class then went down
// and up about once a second, an ERROR and an INFO line each time. Now
// the episode lasts until a pull is answered: one ERROR line at its
// start, one INFO line at its end, each consumer made and lost again in
// between a debug line (and sluice_jobs_worker_consumer_lost_total); the
// class stays on /status and in sluice_jobs_worker_classes_down the
// while. A class made again but not pulled (every slot busy with other
// classes) is reported down until its first pull. It ends with ctx.
func (w *worker) retryConsumer(ctx context.Context, class string, i int, err error, up chan<- int, events <-chan bool) {
	s := w.s
	since := s.now()
	s.classesDown.mark(class, since, err, true)
	defer s.classesDown.clear(class)
	s.log.Error("job worker cannot create the consumer of a class: its jobs wait, the other classes run; retrying with backoff",
		"class", class, "error", err, "retry_first", classRetryFirst.String(), "retry_max", classRetryMax.String())
	wait := classRetryFirst
	made := 0
	for attempts := 1; ; attempts++ {
		fire, stop := w.o.classTimer(wait)
		select {
		case <-fire:
			stop()
		case <-ctx.Done():
			stop()
			return
		}
		if _, err = s.consumer(ctx, class); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.classesDown.mark(class, s.now(), err, false)
			s.log.Debug("job worker still cannot create the consumer of a class", "class", class, "error", err)
			// NATS or JetStream away (a disk fault shuts JetStream down, every
			// pull answered 503, until the store's recovery; a restart; a
			// cluster electing) is waited for at the first wait, as
			// startConsumers waits for NATS: a backoff grown to a minute
			// meanwhile held the class's jobs up to a minute past its return.
			if IsUnavailable(err) {
				wait = classRetryFirst
			} else {
				wait = min(2*wait, classRetryMax)
			}
			continue
		}
		made++
		if w.o.consumerMade != nil {
			w.o.consumerMade(class)
		}
		select {
		case up <- i:
		case <-ctx.Done():
			return
		}
		select {
		case pulled := <-events:
			if pulled {
				s.log.Info("job worker created the consumer of a class: its jobs run again", "class", class,
					"attempts", attempts+1, "consumers_made", made, "down_for", s.now().Sub(since).Round(time.Millisecond).String())
				return
			}
		case <-ctx.Done():
			return
		}
		// Made, and its pulls answered 503 again: the class stays down,
		// tried again at the first wait (as the pulls were before a 503
		// took a class down: about one a second).
		s.classesDown.mark(class, s.now(), errConsumerGone, false)
		s.log.Debug("job worker made the consumer of a class, but its pulls are answered 503 again", "class", class, "consumers_made", made)
		wait = classRetryFirst
	}
}

// ClassesDown is the classes whose consumer a worker of this Store cannot
// create, for /status ("" if none).
func (s *Store) ClassesDown() string { return s.classesDown.text() }

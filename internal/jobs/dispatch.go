package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// dispatcher is the one goroutine of a RunWorker that takes messages from
// NATS, for all of its slots. A slot that passed its gate announces
// itself (ready) and waits for a message (work). An idle worker so holds
// one pull request per class, each waiting up to PollWait, instead of
// one per slot: with the default 64 slots each slot used to ask every
// class in turn every PollWait, some 190 requests a second to an empty
// queue, and every one a wake-up of the gateway (issue 12).
//
// What the slots did, it keeps:
//   - class preference: queued messages are taken most preferred class
//     first (a no-wait request per class, for as many messages as there
//     are waiting slots);
//   - the spare-capacity gate: no request for a message is sent without
//     the Gate's fresh consent (asked again before every request, so a
//     slot that announced itself long ago takes nothing once the pool is
//     full);
//   - no message is taken for which no slot waits: requests outstanding
//     plus messages held never exceed the waiting slots;
//   - NATS away: a failed request pauses requests for PollWait;
//   - shutdown: a pull is never abandoned (the server could hand it a
//     message no one would hold until AckWait); run waits for each one's
//     answer and naks what comes back, so it runs at once elsewhere.
type dispatcher struct {
	cons     []jetstream.Consumer
	gate     Gate // nil: always open
	pollWait time.Duration
	log      *slog.Logger

	ready   chan struct{}      // a slot waits for a message; room for every slot
	work    chan jetstream.Msg // a message for a waiting slot
	results chan pulled        // answers of the waiting pulls, room for one per class

	gateAsk  chan struct{} // run asks the gate keeper for consent
	gateOpen chan struct{} // the gate keeper's consent
}

// pulled is the answer to a pull on class cons[class].
type pulled struct {
	class int
	msg   jetstream.Msg
	err   error
}

func newDispatcher(cons []jetstream.Consumer, o WorkerOptions, log *slog.Logger) *dispatcher {
	return &dispatcher{
		cons: cons, gate: o.Gate, pollWait: o.PollWait, log: log,
		ready:   make(chan struct{}, o.Concurrency),
		work:    make(chan jetstream.Msg),
		results: make(chan pulled, len(cons)),
		gateAsk: make(chan struct{}, 1), gateOpen: make(chan struct{}),
	}
}

// take waits for a message for one slot, nil when ctx ends first.
func (d *dispatcher) take(ctx context.Context) jetstream.Msg {
	d.ready <- struct{}{} // never blocks: there is room for every slot
	select {
	case m := <-d.work:
		return m
	case <-ctx.Done():
		return nil
	}
}

// dispatchState is run's bookkeeping.
type dispatchState struct {
	want    int             // slots waiting for a message
	held    []jetstream.Msg // taken, not yet handed to a slot
	waiting []bool          // a pull is outstanding on class i
	pending int             // how many are
	turn    int             // the class asked first when not all can be
	burst   bool            // the last answer brought a message: more may be queued
	open    bool            // the gate consented since the last requests
	asked   bool            // the gate keeper was asked and has not answered
	pause   <-chan time.Time
}

// run dispatches until ctx ends, then settles what it holds.
func (d *dispatcher) run(ctx context.Context) {
	st := &dispatchState{waiting: make([]bool, len(d.cons))}
	var keeper sync.WaitGroup
	if d.gate != nil {
		keeper.Go(func() { d.keepGate(ctx) })
	}
	defer func() {
		keeper.Wait()
		for _, m := range st.held {
			_ = m.Nak()
		}
		for ; st.pending > 0; st.pending-- {
			if r := <-d.results; r.msg != nil {
				_ = r.msg.Nak()
			}
		}
	}()
	for {
		for len(st.held) > 0 && st.want > 0 {
			select {
			case d.work <- st.held[0]:
				st.held, st.want = st.held[1:], st.want-1
			case <-ctx.Done():
				return
			}
		}
		if d.request(st); len(st.held) > 0 && st.want > 0 {
			continue // taken from the queue: hand it out
		}
		select {
		case <-d.ready:
			st.want++
		case r := <-d.results:
			st.waiting[r.class] = false
			st.pending--
			if r.msg != nil {
				st.held, st.burst = append(st.held, r.msg), true
			}
			if r.err != nil {
				d.failed(st, r.err)
			}
		case <-d.gateOpen:
			st.asked, st.open = false, true
		case <-st.pause:
			st.pause = nil
		case <-ctx.Done():
			return
		}
	}
}

// request sends the requests the waiting slots need, once the gate
// consents: first a no-wait request per class in order of preference
// (when nothing is outstanding, or messages are flowing), then, if that
// found none, a waiting pull on each class not already waited on.
func (d *dispatcher) request(st *dispatchState) {
	need := st.want - st.pending - len(st.held)
	queued := st.pending == 0 || st.burst
	if need <= 0 || st.pause != nil || (!queued && st.pending == len(d.cons)) {
		return
	}
	if !st.open && d.gate != nil {
		if !st.asked {
			st.asked = true
			d.gateAsk <- struct{}{} // room for one: asked was false
		}
		return
	}
	st.open = false
	if queued {
		st.burst = false
		msgs, err := d.takeQueued(need)
		st.held = append(st.held, msgs...)
		if err != nil {
			d.failed(st, err)
		}
		if len(msgs) > 0 || err != nil {
			return
		}
	}
	started := false
	for k := 0; k < len(d.cons) && st.pending+len(st.held) < st.want; k++ {
		i := (st.turn + k) % len(d.cons)
		if st.waiting[i] {
			continue
		}
		st.waiting[i], started = true, true
		st.pending++
		go d.pull(i) // owned: run reads every answer before it returns
	}
	if started {
		st.turn++
	}
}

// takeQueued takes up to n queued messages, most preferred class first,
// without waiting.
func (d *dispatcher) takeQueued(n int) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for _, c := range d.cons {
		if len(msgs) == n {
			break
		}
		b, err := c.FetchNoWait(n - len(msgs))
		if err != nil {
			return msgs, err
		}
		for m := range b.Messages() {
			msgs = append(msgs, m)
		}
		if err := b.Error(); err != nil {
			return msgs, err
		}
	}
	return msgs, nil
}

// pull waits up to PollWait for one message of class i.
func (d *dispatcher) pull(i int) {
	r := pulled{class: i}
	b, err := d.cons[i].Fetch(1, jetstream.FetchMaxWait(d.pollWait))
	if err == nil {
		r.msg, err = first(b)
	}
	r.err = err
	d.results <- r // never blocks: room for one answer per class
}

// failed logs a failed request and pauses requests for PollWait: NATS
// away, do not spin.
func (d *dispatcher) failed(st *dispatchState, err error) {
	d.log.Warn("fetching jobs", "err", err)
	st.pause = time.After(d.pollWait)
}

// keepGate answers each of run's requests for consent once the Gate
// gives it.
func (d *dispatcher) keepGate(ctx context.Context) {
	for {
		select {
		case <-d.gateAsk:
		case <-ctx.Done():
			return
		}
		for {
			err := d.gate.Wait(ctx, "")
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				break
			}
			d.log.Warn("gate failed", "err", err)
			sleep(ctx, d.pollWait)
		}
		select {
		case d.gateOpen <- struct{}{}:
		case <-ctx.Done():
			return
		}
	}
}

func first(b jetstream.MessageBatch) (jetstream.Msg, error) {
	var m jetstream.Msg
	for msg := range b.Messages() {
		m = msg
	}
	if m == nil {
		return nil, b.Error()
	}
	return m, nil
}

package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// dispatcher is the one goroutine of a RunWorker that takes messages from
// NATS, for all of its slots. A slot that passed its gate announces
// itself (ready) and waits for a message (work). An idle worker so holds
// one pull request per class, each waiting up to PollWait, instead of
// one per slot: with the default 64 slots each slot used to ask every
// class in turn every PollWait, some 190 requests a second to an empty
// queue, and every one a wake-up of the gateway (issue 12).
//
// It sends its pull requests itself, each answered on a subscription
// that lives until nothing more can come for the pull (pullInbox). So no
// message the server hands a pull is dropped by this client: one that
// comes after the dispatcher stopped waiting for its pull (the pull's
// expiry plus answerMargin) still arrives, and goes to a waiting slot no
// request is out for, or is nak'ed at once and runs elsewhere now.
// nats.go's Fetch dropped such a message, and the job waited out AckWait
// for nothing.
//
// What the slots did, it keeps:
//   - class preference: queued messages are taken most preferred class
//     first (a no-wait request per class, for as many messages as there
//     are waiting slots);
//   - the spare-capacity gate: no request for a message is sent without
//     the Gate's fresh consent (asked again before every round of
//     requests, so a slot that announced itself long ago takes nothing
//     once the pool is full);
//   - no message is taken for which no slot waits: messages requested
//     and not yet received, plus messages held, never exceed the waiting
//     slots, and a late message that would exceed them is nak'ed;
//   - NATS away: a failed request pauses requests for PollWait;
//   - a full store: no request while the worker's pause backs off
//     (storepause.go);
//   - shutdown: a pull is never abandoned (the server could hand it a
//     message no one would hold until AckWait); run waits for each one's
//     answer and naks what comes back, so it runs at once elsewhere, then
//     drains the inbox, nak'ing whatever still arrives.
type dispatcher struct {
	subjects []string // the pull-request subject of each class's consumer
	// down[i]: class i's consumer could not be created yet, no pull is
	// sent for it until its retry says on up that it is (classretry.go).
	// Set before run; run keeps it as a waiting pull out on the class.
	down     []bool
	up       chan int
	in       *pullInbox
	gate     Gate // nil: always open
	pollWait time.Duration
	log      *slog.Logger

	// lost tells the worker of a class whose consumer went away under
	// it (gone.go): room for every class.
	lost chan int
	// probing[i]: class i came up (its consumer made) and no pull on it
	// has been answered yet; the first answer other than a 503 is sent
	// on pulled, the first 503 on lost (gone.go). Run's goroutine only.
	probing []bool
	pulled  chan int // room for every class
	// ups[i] counts class i's ups: a 503 to a pull sent before the
	// latest one answers the consumer that was gone, not the one made
	// since. Run's goroutine only.
	ups []int

	ready chan struct{} // a slot waits for a message; room for every slot
	work  chan jobMsg   // a message for a waiting slot

	gateAsk  chan struct{} // run asks the gate keeper for consent
	gateOpen chan struct{} // the gate keeper's consent

	// stalled, when set, returns a channel closed when the backoff of
	// the worker's pause on a full store ends, nil when none is under way
	// (storePause.stalled).
	stalled func() <-chan struct{}
}

// answerMargin is how long past a pull's expiry (past its sending, for a
// no-wait pull) run waits for the pull's end before it counts the pull
// gone: the server ends an expired pull (408) at its expiry, so a later
// end is late, or was lost with a connection. What a gone pull brings
// afterwards is still received, as late.
const answerMargin = time.Second

// goneLinger is how long a gone pull's subscription is kept for what the
// pull may still bring, when its end never comes. The server hands a
// pull nothing past its expiry, and what it handed out before, it sent
// ahead of the pull's end on the same connection; an end that never
// comes was lost with a connection, and what came before it too.
const goneLinger = time.Minute

func newDispatcher(nc *nats.Conn, classes []string, o WorkerOptions, log *slog.Logger) *dispatcher {
	subjects := make([]string, len(classes))
	for i, class := range classes {
		subjects[i] = pullSubject + workStream + "." + consumerName(class)
	}
	return &dispatcher{
		subjects: subjects, down: make([]bool, len(classes)), up: make(chan int), lost: make(chan int, len(classes)),
		probing: make([]bool, len(classes)), pulled: make(chan int, len(classes)), ups: make([]int, len(classes)),
		in: newPullInbox(nc), gate: o.Gate, pollWait: o.PollWait, log: log,
		ready:   make(chan struct{}, o.Concurrency),
		work:    make(chan jobMsg),
		gateAsk: make(chan struct{}, 1), gateOpen: make(chan struct{}),
	}
}

// take waits for a message for one slot, nil when ctx ends first.
func (d *dispatcher) take(ctx context.Context) jobMsg {
	d.ready <- struct{}{} // never blocks: there is room for every slot
	select {
	case m := <-d.work:
		return m
	case <-ctx.Done():
		return nil
	}
}

// pull is a pull request whose subscription is open.
type pull struct {
	sub      *nats.Subscription
	class    int
	batch    int       // messages asked for
	left     int       // of which not received yet
	wait     bool      // a waiting pull; false: a no-wait one, of a scan
	gone     bool      // run no longer waits for it; what it brings is late
	deadline time.Time // live: when it is gone; gone: when it is closed
	ups      int       // the class's ups when it was sent (gone.go)
}

// scan is a round of no-wait requests, one class after the other.
type scan struct {
	on    bool // a request of the scan is out
	asked int  // messages the scan takes at most
	found int  // messages it took
}

// dispatchState is run's bookkeeping.
type dispatchState struct {
	want     int      // slots waiting for a message
	held     []jobMsg // taken, not yet handed to a slot
	pulls    map[*nats.Subscription]*pull
	live     int    // pulls not gone
	pending  int    // messages the live pulls may still bring
	waiting  []bool // a waiting pull is out on class i, or class i is down
	nwait    int    // how many are
	scan     scan
	seq      uint64 // numbers the reply subjects
	turn     int    // the class asked first when not all can be
	burst    bool   // the last answer brought a message: more may be queued
	open     bool   // the gate consented since the last requests
	asked    bool   // the gate keeper was asked and has not answered
	stopping bool   // run settles: no more requests
	pause    <-chan time.Time
	stall    <-chan struct{} // closed when the worker's pause lets it pull
	timer    *time.Timer     // fires at the earliest pull deadline
	armed    time.Time       // the deadline it is set for
}

// run dispatches until ctx ends, then settles what it holds.
func (d *dispatcher) run(ctx context.Context) {
	st := &dispatchState{
		pulls: map[*nats.Subscription]*pull{}, waiting: make([]bool, len(d.subjects)),
		timer: time.NewTimer(time.Hour),
	}
	st.timer.Stop()
	// A class down counts as waited on: waitOn skips it, and a scan
	// passes it (nextUp).
	for i, down := range d.down {
		if down {
			st.waiting[i] = true
			st.nwait++
		}
	}
	var keeper sync.WaitGroup
	if d.gate != nil {
		keeper.Go(func() { d.keepGate(ctx) })
	}
	defer func() {
		keeper.Wait()
		d.settle(st)
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
		d.request(st)
		select {
		case <-d.ready:
			st.want++
		case m := <-d.in.replies:
			d.answer(st, m)
		case <-st.timer.C:
			d.expire(st)
		case <-d.gateOpen:
			st.asked, st.open = false, true
		case <-st.pause:
			st.pause = nil
		case <-st.stall:
			// A consent from before the pause is stale: ask again.
			st.stall, st.open = nil, false
		case i := <-d.up:
			if st.waiting[i] {
				st.nwait--
			}
			d.down[i], st.waiting[i] = false, false
			d.probing[i] = true
			d.ups[i]++
		case <-ctx.Done():
			return
		}
	}
}

// nextUp is the first class from i on whose consumer exists, -1 if none.
func (d *dispatcher) nextUp(i int) int {
	for ; i < len(d.down); i++ {
		if !d.down[i] {
			return i
		}
	}
	return -1
}

// settle naks what run holds, waits for the end of every live pull,
// nak'ing what they bring, and closes the subscriptions left.
func (d *dispatcher) settle(st *dispatchState) {
	st.stopping, st.want = true, 0 // a late message is nak'ed too
	for {
		for _, m := range st.held {
			_ = m.Nak()
		}
		st.held = nil
		if st.live == 0 {
			break
		}
		select {
		case m := <-d.in.replies:
			d.answer(st, m)
		case <-st.timer.C:
			d.expire(st)
		}
	}
	st.timer.Stop()
	var left []*nats.Subscription
	for sub := range st.pulls {
		left = append(left, sub)
	}
	d.in.close(left)
}

// request sends the requests the waiting slots need, once the gate
// consents: first no-wait requests, class by class in order of
// preference (when nothing is out, or messages are flowing), then, if
// they found none, a waiting pull on each class not already waited on.
func (d *dispatcher) request(st *dispatchState) {
	need := st.want - st.pending - len(st.held)
	queued := st.pending == 0 || st.burst
	if need <= 0 || st.pause != nil || st.stall != nil || st.scan.on || (!queued && st.nwait == len(d.subjects)) {
		return
	}
	if d.stalled != nil {
		if st.stall = d.stalled(); st.stall != nil {
			return
		}
	}
	if !st.open && d.gate != nil {
		if !st.asked {
			st.asked = true
			d.gateAsk <- struct{}{} // room for one: asked was false
		}
		return
	}
	st.open = false
	if !queued {
		d.waitOn(st)
		return
	}
	first := d.nextUp(0)
	if first < 0 {
		return // every class down: their retries will say
	}
	st.burst = false
	st.scan = scan{asked: need}
	if err := d.send(st, first, need, 0); err != nil {
		d.failed(st, err)
	}
}

// waitOn sends a waiting pull, for one message, on each class not waited
// on, as long as slots wait for more than is asked for.
func (d *dispatcher) waitOn(st *dispatchState) {
	started := false
	for k := 0; k < len(d.subjects) && st.pending+len(st.held) < st.want; k++ {
		i := (st.turn + k) % len(d.subjects)
		if st.waiting[i] {
			continue
		}
		if err := d.send(st, i, 1, d.pollWait); err != nil {
			d.failed(st, err)
			break
		}
		started = true
	}
	if started {
		st.turn++
	}
}

// send sends a pull request for batch messages of class, waiting up to
// expires for them (0: a no-wait request of the scan).
func (d *dispatcher) send(st *dispatchState, class, batch int, expires time.Duration) error {
	st.seq++
	reply := d.in.prefix + strconv.FormatUint(st.seq, 10)
	sub, err := d.in.subscribe(reply)
	if err != nil {
		return err
	}
	if err := d.in.ask(d.subjects[class], reply, batch, expires); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	// Answers are read by this goroutine only: none is seen before this.
	st.pulls[sub] = &pull{
		sub: sub, class: class, batch: batch, left: batch, wait: expires > 0,
		deadline: time.Now().Add(expires + answerMargin), ups: d.ups[class],
	}
	st.live++
	st.pending += batch
	if expires > 0 {
		st.waiting[class] = true
		st.nwait++
	} else {
		st.scan.on = true
	}
	d.arm(st)
	return nil
}

// answer takes one reply to a pull: a message, or a status that ends
// the pull.
func (d *dispatcher) answer(st *dispatchState, m *nats.Msg) {
	p := st.pulls[m.Sub] // nil: a reply after the pull's end, none is expected
	code, description := replyStatus(m)
	switch {
	case code == "100": // a heartbeat
	case code != "" && p == nil:
	case code != "" && p.gone:
		d.close(st, p)
	case code == "404", code == "408": // nothing queued; expired
		d.answered(p.class)
		d.ended(st, p, true, nil)
	case code == "409" && description == "Server Shutdown":
		d.ended(st, p, true, errServerShutdown)
	case code == "503":
		d.ended(st, p, true, nil)
		if p.ups == d.ups[p.class] {
			d.consumerGone(st, p.class, description)
		}
	case code != "":
		d.ended(st, p, true, fmt.Errorf("jobs: pull request answered %s %s", code, description))
	case p == nil || p.gone:
		if p != nil {
			if p.left--; p.left == 0 {
				d.close(st, p)
			}
		}
		d.late(st, d.in.message(m))
	default:
		d.answered(p.class)
		st.held = append(st.held, d.in.message(m))
		st.pending--
		p.left--
		if p.wait {
			st.burst = true
		}
		if p.left == 0 {
			d.ended(st, p, true, nil)
		}
	}
}

// late takes a message whose pull run no longer waited for: kept only
// for a slot no request is out for, else given back at once, to run
// elsewhere now rather than after AckWait.
func (d *dispatcher) late(st *dispatchState, msg jobMsg) {
	if st.pending+len(st.held) < st.want {
		st.held = append(st.held, msg)
		return
	}
	d.log.Debug("late message given back")
	_ = msg.Nak()
}

// ended takes live pull p out of the reckoning: on to the next step of
// its scan, or its class free for the next waiting pull. Its
// subscription is closed when nothing more can come (done), else kept
// for what the pull may still bring, as late.
func (d *dispatcher) ended(st *dispatchState, p *pull, done bool, err error) {
	st.live--
	st.pending -= p.left
	// A class down stays waited on (gone.go); nwait counts the flags set.
	if p.wait && st.waiting[p.class] && !d.down[p.class] {
		st.waiting[p.class] = false
		st.nwait--
	}
	if done {
		d.close(st, p)
	} else {
		p.gone, p.deadline = true, time.Now().Add(goneLinger)
		d.arm(st)
	}
	if err != nil {
		d.failed(st, err)
	}
	if !p.wait {
		d.scanOn(st, p, err)
	}
}

// close closes pull p's subscription.
func (d *dispatcher) close(st *dispatchState, p *pull) {
	delete(st.pulls, p.sub)
	_ = p.sub.Unsubscribe()
	d.arm(st)
}

// scanOn carries a scan on after its request on p.class ended: to the
// next class for what it has not found yet, or, if it found nothing, to
// waiting pulls, all on the consent the scan started with.
func (d *dispatcher) scanOn(st *dispatchState, p *pull, err error) {
	st.scan.found += p.batch - p.left
	st.scan.on = false
	if err != nil || st.stopping {
		return
	}
	if next := d.nextUp(p.class + 1); st.scan.asked-st.scan.found > 0 && next >= 0 {
		if err := d.send(st, next, st.scan.asked-st.scan.found, 0); err != nil {
			d.failed(st, err)
		}
		return
	}
	if st.scan.found == 0 {
		d.waitOn(st)
	}
}

// expire lets pulls whose end is overdue go, and closes the
// subscriptions of gone pulls that brought nothing more for goneLinger.
func (d *dispatcher) expire(st *dispatchState) {
	st.armed = time.Time{}
	now := time.Now()
	for _, p := range st.pulls {
		switch {
		case now.Before(p.deadline):
		case p.gone:
			d.close(st, p)
		default:
			d.log.Debug("pull unanswered", "class", p.class)
			d.ended(st, p, false, nil)
		}
	}
	d.arm(st)
}

// arm sets the timer to the earliest pull deadline.
func (d *dispatcher) arm(st *dispatchState) {
	var first time.Time
	for _, p := range st.pulls {
		if first.IsZero() || p.deadline.Before(first) {
			first = p.deadline
		}
	}
	if first.Equal(st.armed) {
		return
	}
	st.armed = first
	if first.IsZero() {
		st.timer.Stop()
		return
	}
	st.timer.Reset(time.Until(first))
}

// failed logs a failed request and pauses requests for PollWait: NATS
// away, do not spin.
func (d *dispatcher) failed(st *dispatchState, err error) {
	if errors.Is(err, errServerShutdown) {
		d.log.Debug("fetching jobs", "err", err)
	} else {
		d.log.Warn("fetching jobs", "err", err)
	}
	st.pause = time.After(d.pollWait)
}

// errServerShutdown ends the pulls out when their server stops: the
// embedded store's recovery restarting it, or a NATS server's restart.
// The connection drops next and the pulls are sent again once it is back,
// as after any drop: not worth a warning each (two per restart, one per
// class).
var errServerShutdown = errors.New("jobs: pull request answered 409 Server Shutdown")

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

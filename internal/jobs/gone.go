package jobs

import "errors"

// A class's consumer can go away under a running worker: the NATS server
// restarted without it (an embedded queue's gateway started on an empty
// or replaced data directory, a consumer directory its start found
// damaged and moved aside, storeconsumers.go), or an operator deleted it.
// Workers made their consumers at start only: a pull on a consumer that
// is not there is answered 503 No Responders, and a `sluice worker`
// (or a gateway's own workers on an external NATS) logged "fetching
// jobs: pull request answered 503" every PollWait for good while the
// class's jobs stayed queued (measured through the binary: two batches
// of 1,500 lines, 0 done in 200 s, after the gateway was restarted on a
// fresh data directory beside two running workers). Now such an answer
// takes the class down, as a class whose consumer could not be made at
// start is (classretry.go): its pulls stop, the worker makes the
// consumer again with a backoff, logs it and reports the class on
// /status, and the class runs again once it is made. Making it again is
// safe: the work queue's consumer state is expendable (storeconsumers.go).

// errConsumerGone is the cause a class down this way is reported with.
var errConsumerGone = errors.New("jobs: the class's consumer is gone (a pull was answered 503)")

// consumerGone takes class i down after a pull on it was answered 503,
// unless it is down already, and tells the worker (lost).
func (d *dispatcher) consumerGone(st *dispatchState, i int, description string) {
	if !st.waiting[i] {
		st.waiting[i] = true // a class down counts as waited on
		st.nwait++
	}
	if d.down[i] {
		return
	}
	d.down[i], d.probing[i] = true, false
	d.log.Debug("pull answered 503: the class's consumer is made again", "subject", d.subjects[i], "description", description)
	select {
	case d.lost <- i:
	default: // never: room for every class, each sent once per time down
	}
}

// answered notes a pull on class i answered without a 503: a class that
// came up is really up (classretry.go says so then, not when its
// consumer was made: a consumer that can be made but whose pulls keep
// getting 503 made the class flap, an ERROR and an INFO line a second).
func (d *dispatcher) answered(i int) {
	if !d.probing[i] {
		return
	}
	d.probing[i] = false
	select {
	case d.pulled <- i:
	default: // never: room for every class, each sent once per time up
	}
}

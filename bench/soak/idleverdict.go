package main

import (
	"fmt"
	"io"
)

// idleRow is one row of the idle table: a series at the idle sample
// before the run and at the one after, and its verdict ("": printed only).
type idleRow struct {
	name          string
	before, after float64
	verdict       string
}

// fdsLess is the idle fds less the pool of connections to the backends
// and the job store's open JetStream block files (judgeIdle).
const fdsLess = sFDs + " - backend conns - jetstream blocks"

// judgeIdle compares the idle samples taken before and after the run,
// with no traffic and the driver's connections closed, and reports
// whether every judged row passed.
//
// The chaos suite's leak target: goroutines and fds back within 5%, fds
// without the keep-alive pool to the backends (a bounded cache: its size
// after the run depends on the last requests' overlap) and without the
// JetStream block files open (nats-server closes them minutes after
// their stream's last use, so an idle sample's count of them is about
// the last minutes' traffic: a run judged FAIL on 17 -> 18 fds so). A
// leak of them still shows in the run's fd series, and here in their
// own row.
//
// The backends' outstanding tokens are the holds of the requests on
// them: with none left they are back to where they were before the run
// (0), and any token more was never given back: a leak, whatever its
// size (the run's verdict only sees a growing hold per request).
func judgeIdle(before, after sample) ([]idleRow, bool) {
	ok := true
	var rows []idleRow
	for _, n := range []string{sGoroutines, sFDs, fdsLess, sBackConns, sBackLessIdle, sOpenLessIdle, mTokens, mBackInflight, sBlocks, sRSS, sHeap, sConsumers, sKeysJob, sKeysLine, sKeysActive, sKeysEvent, sKeysPending, sKeysOther} {
		r := idleRow{name: n, before: before.values[n], after: after.values[n]}
		if n == fdsLess {
			r.before = before.values[sFDs] - before.values[sBackConns] - max(before.values[sBlocks], 0)
			r.after = after.values[sFDs] - after.values[sBackConns] - max(after.values[sBlocks], 0)
		}
		switch n {
		case sGoroutines, fdsLess:
			r.verdict = "PASS"
			if r.after > r.before*1.05 {
				r.verdict, ok = "FAIL", false
			}
		case mTokens:
			r.verdict = "PASS (back to before)"
			if r.after > r.before {
				r.verdict, ok = "FAIL (not given back)", false
			}
		}
		rows = append(rows, r)
	}
	return rows, ok
}

func printIdle(w io.Writer, rows []idleRow) {
	for _, r := range rows {
		fmt.Fprintf(w, "  %-40s %12s -> %-12s %s\n", r.name, num(r.before), num(r.after), r.verdict)
	}
}

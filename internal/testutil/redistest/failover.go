package redistest

import (
	"fmt"
	"testing"
	"time"
)

// KillFirstMaster is the set-up of a test of one master lost: it splits
// names by whether the cluster's first master holds the key key(name)
// (the others answer MOVED to EXISTS), fails t unless both sides have
// some, and then kills that master (Stop, a kill -9).
func (c *Cluster) KillFirstMaster(t testing.TB, names []string, key func(name string) string) (onVictim, onOthers []string) {
	t.Helper()
	victim := c.Servers[0]
	for _, n := range names {
		if v, err := victim.Do("EXISTS", key(n)); err == nil && v == "1" {
			onVictim = append(onVictim, n)
		} else {
			onOthers = append(onOthers, n)
		}
	}
	if len(onVictim) == 0 || len(onOthers) == 0 {
		t.Fatalf("names on the victim %d, elsewhere %d: want both", len(onVictim), len(onOthers))
	}
	victim.Stop()
	return onVictim, onOthers
}

// AwaitRound runs round up to 40 times until it reports done, and fails t
// with failure and the last round's state if none does. The client learns
// the cluster's map of slots in the background, so a round may come too
// early; a round moves the test's clock itself (past any back-off), and
// the pause between rounds only leaves the refresh a moment: the
// assertion is that some round comes right, never how soon.
func AwaitRound(t testing.TB, failure string, round func() (done bool, state string)) {
	t.Helper()
	var last string
	for n := range 40 {
		done, state := round()
		if done {
			return
		}
		last = fmt.Sprintf("round %d: %s", n, state)
		time.Sleep(50 * time.Millisecond) // not a synchronisation
	}
	t.Fatalf("%s; last %s", failure, last)
}

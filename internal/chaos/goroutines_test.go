package chaos

import (
	"fmt"
	"strings"
	"testing"
)

// TestLeakTargetFailsOnALeakedGoroutine: goroutines that never end,
// started between the two samples (10 over a base of about 100: past the
// 5%), fail the leak target, and the note of a failed target names them.
func TestLeakTargetFailsOnALeakedGoroutine(t *testing.T) {
	before, after := sampleAround(t, "/leak")
	row := Row{Before: before, After: after}
	if got := row.leakTarget(); got != "FAIL" {
		t.Errorf("leak target %s with %d goroutines leaked (goroutines %d -> %d)", got, leakedGoroutines, before.Goroutines, after.Goroutines)
	}
	g := stackGrowth(before.Stacks, after.Stacks, 8)
	if want := fmt.Sprintf("+%d github.com/sluice-gw/sluice/internal/chaos.leakForever", leakedGoroutines); !strings.HasPrefix(g, want) {
		t.Errorf("growth by stack = %q, want it to start with %q", g, want)
	}
}

// TestParseGoroutines reads a profile in net/http/pprof's debug=1 form:
// the total, the groups by stack, and net/http's upstream pool goroutines
// told apart by their frames.
func TestParseGoroutines(t *testing.T) {
	const profile = `goroutine profile: total 7
3 @ 0x43a0f6 0x4071ac 0x6a0c3e 0x471721
#	0x6a0c3d	net/http.(*persistConn).readLoop+0x3c4	/usr/local/go/src/net/http/transport.go:2205

2 @ 0x43a0f6 0x44b585 0x4fe0d2 0x471721
#	0x44b584	runtime.selectgo+0x7b3	/usr/local/go/src/runtime/select.go:351
#	0x4fe0d1	github.com/sluice-gw/sluice/internal/proxy.(*ReadaheadWriter).drain+0x91	/src/internal/proxy/readahead.go:290

1 @ 0x43a0f6 0x4071ac 0x6a0c3e 0x471721
#	0x6a0c3d	net/http.(*persistConn).writeLoop+0x3c4	/usr/local/go/src/net/http/transport.go:2405

1 @ 0x43a0f6 0x4071ac
#	0x43a0f5	runtime.gopark+0xce	/usr/local/go/src/runtime/proc.go:435
#	0x4071ab	internal/poll.(*FD).Read+0x2a	/usr/local/go/src/internal/poll/fd_unix.go:165
#	0x4071ac	net/http.(*conn).serve+0x2a	/usr/local/go/src/net/http/server.go:2102
`
	d, err := parseGoroutines(strings.NewReader(profile))
	if err != nil {
		t.Fatal(err)
	}
	if d.Total != 7 || d.Pool != 4 {
		t.Errorf("total %d, pool %d; want 7 and 4", d.Total, d.Pool)
	}
	for key, n := range map[string]int{
		"net/http.(*persistConn).readLoop":                                    3,
		"github.com/sluice-gw/sluice/internal/proxy.(*ReadaheadWriter).drain": 2,
		"net/http.(*conn).serve":                                              1,
	} {
		if d.Stacks[key] != n {
			t.Errorf("stacks[%q] = %d, want %d (all: %v)", key, d.Stacks[key], n, d.Stacks)
		}
	}
	if g := stackGrowth(map[string]int{"a": 1, "b": 2}, map[string]int{"a": 3, "b": 2, "c": 1}, 1); g != "+2 a, and 1 more" {
		t.Errorf("growth = %q", g)
	}
}

// FuzzParseGoroutines: any text read as a goroutine profile either errs or
// gives counts that are never negative, with no more pool goroutines
// than goroutines counted in groups.
func FuzzParseGoroutines(f *testing.F) {
	f.Add("goroutine profile: total 3\n2 @ 0x1 0x2\n#\t0x1\tnet/http.(*persistConn).readLoop+0x3c4\t/x.go:1\n\n1 @ 0x1\n#\t0x1\tmain.main+0x1\t/m.go:2\n")
	f.Add("goroutine profile: total x\n")
	f.Add("1 @\n#\n")
	f.Fuzz(func(t *testing.T, profile string) {
		d, err := parseGoroutines(strings.NewReader(profile))
		if err != nil {
			return
		}
		grouped := 0
		for key, n := range d.Stacks {
			if n < 0 {
				t.Fatalf("stack %q counted %d", key, n)
			}
			grouped += n
		}
		if d.Pool < 0 || d.Pool > grouped {
			t.Fatalf("pool %d of %d grouped goroutines", d.Pool, grouped)
		}
	})
}

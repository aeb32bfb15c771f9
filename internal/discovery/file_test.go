package discovery

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// chanSink hands what a source reports to the test.
type chanSink struct {
	updates chan []endpoint.Spec
	fails   chan error
	held    chan error    // Unsettled: dropped when full (a file source's holds may be many)
	poke    chan struct{} // something was reported (drive)
}

func newChanSink() *chanSink {
	return &chanSink{updates: make(chan []endpoint.Spec, 16), fails: make(chan error, 16), held: make(chan error, 16),
		poke: make(chan struct{}, 1)}
}

func (s *chanSink) Update(set []endpoint.Spec) { s.updates <- set; s.poked() }
func (s *chanSink) Fail(err error)             { s.fails <- err; s.poked() }
func (s *chanSink) Unsettled(err error) {
	select {
	case s.held <- err:
	default:
	}
	s.poked()
}

// heldBack waits for a read held back (Unsettled) whose error holds want.
func (s *chanSink) heldBack(t *testing.T, want string) error {
	t.Helper()
	select {
	case err := <-s.held:
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("held back with %q, want %q", err, want)
		}
		return err
	case <-time.After(wait):
		t.Fatalf("no read held back with %q", want)
	}
	return nil
}

func (s *chanSink) poked() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// wait bounds a wait on the source; generous, it only catches a hang.
const wait = time.Minute

func (s *chanSink) next(t *testing.T) []endpoint.Spec {
	t.Helper()
	select {
	case set := <-s.updates:
		return set
	case <-time.After(wait):
		t.Fatal("no update")
	}
	return nil
}

// failure is the next failure whose text has want; others are passed
// over (a file caught half-written, between truncation and write, is a
// failure too, reported before the one the test made).
func (s *chanSink) failure(t *testing.T, want string) error {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case err := <-s.fails:
			if strings.Contains(err.Error(), want) {
				return err
			}
		case <-timeout:
			t.Fatalf("no failure reported with %q", want)
		}
	}
}

func urls(set []endpoint.Spec) string {
	var out []string
	for _, s := range set {
		out = append(out, s.URL)
	}
	return strings.Join(out, ",")
}

func replace(t *testing.T, path, src string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// runFile runs a File source until the test ends.
func runFile(t *testing.T, path string) *chanSink {
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); File{Path: path}.Run(ctx, sink) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sink
}

// A file replaced by rename, edited in place, made invalid and removed:
// each good version is reported once, each bad one is a failure naming
// the file and line, and the last good set is never withdrawn.
func TestFileSourceFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.yaml")
	replace(t, path, "- targets: ['a:1']\n")
	sink := runFile(t, path)
	if got := urls(sink.next(t)); got != "http://a:1" {
		t.Fatalf("first set %s", got)
	}

	replace(t, path, "- targets: ['a:1', 'b:2']\n")
	if got := urls(sink.next(t)); got != "http://a:1,http://b:2" {
		t.Fatalf("after rename %s", got)
	}

	if err := os.WriteFile(path, []byte("- targets: ['b:2']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := urls(sink.next(t)); got != "http://b:2" {
		t.Fatalf("after in-place write %s", got)
	}

	replace(t, path, "- targets: ['b:2']\n- targets: ['c']\n")
	sink.failure(t, path+`:2: [1].targets[0]: "c" is not host:port`)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := sink.failure(t, "targets file"); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("removed file: %v", err)
	}

	// Back, unchanged from the last good set: reported again (the
	// manager logs the recovery and rebuilds nothing); changed: reported.
	replace(t, path, "- targets: ['b:2']\n")
	if got := urls(sink.next(t)); got != "http://b:2" {
		t.Fatalf("after recovery %s", got)
	}
	replace(t, path, "- targets: ['d:4']\n")
	if got := urls(sink.next(t)); got != "http://d:4" {
		t.Fatalf("after a change %s", got)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// A missing file at start is a failure, and the source keeps watching.
func TestFileSourceStartsWithoutTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.json")
	sink := runFile(t, path)
	sink.failure(t, "no such file")
	replace(t, path, `[{"targets": ["a:1"]}]`)
	if got := urls(sink.next(t)); got != "http://a:1" {
		t.Fatalf("set %s", got)
	}
}

func TestStaticReportsItsListOnce(t *testing.T) {
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Static{{URL: "http://a:1"}}.Run(ctx, sink) }()
	if got := urls(sink.next(t)); got != "http://a:1" {
		t.Fatalf("set %s", got)
	}
	cancel()
	<-done
}

// A file past the bound is refused unread, and the last set stands.
func TestFileSourceRefusesAnOversizedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.yaml")
	replace(t, path, "- targets: ['a:1']\n")
	sink := runFile(t, path)
	sink.next(t)
	replace(t, path, "- targets: ['a:1']\n#"+strings.Repeat("x", maxFileBytes)+"\n")
	sink.failure(t, "larger than")
}

// fakeAfter is File.After driven by the test: a timer fires when the
// test says (fire), never by itself.
type fakeAfter struct {
	mu     sync.Mutex
	armed  map[time.Duration]chan time.Time // by duration, the last armed and not fired
	notify chan struct{}                    // a timer was armed
}

func newFakeAfter() *fakeAfter {
	return &fakeAfter{armed: map[time.Duration]chan time.Time{}, notify: make(chan struct{}, 1)}
}

func (f *fakeAfter) after(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.mu.Lock()
	f.armed[d] = c
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
	return c
}

// fire fires the last timer of d armed and not yet fired; false: none.
func (f *fakeAfter) fire(d time.Duration) bool {
	f.mu.Lock()
	c := f.armed[d]
	delete(f.armed, d)
	f.mu.Unlock()
	if c == nil {
		return false
	}
	c <- time.Time{}
	return true
}

// report is the next thing a source told its sink: one of set, fail,
// held.
type report struct {
	set        []endpoint.Spec
	fail, held error
}

// drive fires the source's timer of d each time it is armed (a newer
// event drops the one before) until the source reports something. A
// report is looked for before each firing: a timer armed after a read
// (by a late event of the same write) must not make a second read.
func (s *chanSink) drive(t *testing.T, fa *fakeAfter, d time.Duration) report {
	t.Helper()
	timeout := time.After(wait)
	for {
		if r, ok := s.reported(); ok {
			return r
		}
		fa.fire(d)
		select {
		case <-s.poke:
		case <-fa.notify:
		case <-timeout:
			t.Fatalf("no report after firing the %s timer", d)
		}
	}
}

// reported is the report waiting, if any.
func (s *chanSink) reported() (report, bool) {
	select {
	case set := <-s.updates:
		return report{set: set}, true
	case err := <-s.fails:
		return report{fail: err}, true
	case err := <-s.held:
		return report{held: err}, true
	default:
		return report{}, false
	}
}

// runFileAfter runs a File source on a test-driven clock.
func runFileAfter(t *testing.T, path string) (*chanSink, *fakeAfter) {
	sink, fa := newChanSink(), newFakeAfter()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); File{Path: path, After: fa.after}.Run(ctx, sink) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sink, fa
}

// A file written in place in two steps (truncated and given its first
// group, then, after a pause longer than the debounce, the rest), read
// between them: the half-written file (empty, or one target of three) is
// held back, the set in use stands, and the whole file is the next set.
// The old source reported the half as the set (two backends dropped) or,
// read empty, as a failure.
func TestFileWrittenInPlaceInTwoSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.yaml")
	replace(t, path, "- targets: ['a:1']\n- targets: ['b:2']\n")
	sink, fa := runFileAfter(t, path)
	if got := urls(sink.next(t)); got != "http://a:1,http://b:2" {
		t.Fatalf("first set %s", got)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString("- targets: ['a:1']\n"); err != nil {
		t.Fatal(err)
	}
	if r := sink.drive(t, fa, fileDebounce); r.held == nil {
		t.Fatalf("the half-written file was not held back: set %q, failure %v", urls(r.set), r.fail)
	}
	if _, err := fh.WriteString("- targets: ['b:2']\n- targets: ['c:3']\n"); err != nil {
		t.Fatal(err)
	}
	if r := sink.drive(t, fa, fileDebounce); urls(r.set) != "http://a:1,http://b:2,http://c:3" {
		t.Fatalf("after the second write: set %q, failure %v, held %v", urls(r.set), r.fail, r.held)
	}
}

// A read that takes targets away and stays (fewer targets, a file
// emptied, a broken file) is applied once the file has not changed for
// fileSettle: the shorter set, or a failure with the last set kept (an
// empty file never empties the pool). A file that keeps changing is
// applied at its fileSettleHolds-th hold.
func TestFileTakingTargetsAwayAppliedOnceSettled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.yaml")
	replace(t, path, "- targets: ['a:1', 'b:2']\n")
	sink, fa := runFileAfter(t, path)
	sink.next(t)
	hold := func(src string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := sink.drive(t, fa, fileDebounce); r.held == nil {
			t.Fatalf("%q not held back: set %q, failure %v", src, urls(r.set), r.fail)
		}
	}

	hold("- targets: ['a:1']\n")
	if r := sink.drive(t, fa, fileSettle); urls(r.set) != "http://a:1" {
		t.Fatalf("settled shorter file: set %q, failure %v, held %v", urls(r.set), r.fail, r.held)
	}

	hold("")
	r := sink.drive(t, fa, fileSettle)
	if r.fail == nil || !strings.Contains(r.fail.Error(), "must be a list of target groups") {
		t.Fatalf("settled empty file: set %q, failure %v, held %v", urls(r.set), r.fail, r.held)
	}

	replace(t, path, "- targets: ['a:1', 'b:2']\n")
	if got := urls(sink.drive(t, fa, fileDebounce).set); got != "http://a:1,http://b:2" {
		t.Fatalf("after the empty file %s", got)
	}
	for i := 1; i < fileSettleHolds; i++ {
		hold(fmt.Sprintf("- targets: ['a:%d']\n", 10+i))
	}
	if err := os.WriteFile(path, []byte("- targets: ['a:99']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := sink.drive(t, fa, fileDebounce); urls(r.set) != "http://a:99" {
		t.Fatalf("hold %d of a changing file: set %q, failure %v, held %v", fileSettleHolds, urls(r.set), r.fail, r.held)
	}
}

// A shorter file renamed over the old one (the documented way: a deploy
// tool, a ConfigMap) is whole when read: applied at once, not held.
func TestFileReplacedWholeAppliesAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.yaml")
	replace(t, path, "- targets: ['a:1', 'b:2']\n")
	sink, fa := runFileAfter(t, path)
	sink.next(t)
	replace(t, path, "- targets: ['b:2']\n")
	if r := sink.drive(t, fa, fileDebounce); urls(r.set) != "http://b:2" {
		t.Fatalf("a shorter file renamed over: set %q, failure %v, held %v", urls(r.set), r.fail, r.held)
	}
}

// A file written on and on beside the targets file (a log, a stream
// saved to disk) does not hold off the read of a replaced targets file:
// writes to other names in the directory are not changes of it.
func TestFileSourceSeesChangesBesideABusyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "targets.yaml")
	replace(t, path, "- targets: ['a:1']\n")
	sink := runFile(t, path)
	if got := urls(sink.next(t)); got != "http://a:1" {
		t.Fatalf("first set %s", got)
	}
	noise, err := os.Create(filepath.Join(dir, "noise.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer noise.Close()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { // a write every 10 ms, well inside the 100 ms debounce
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				noise.WriteString("a line\n")
			}
		}
	}()
	defer func() { close(stop); <-stopped }()
	replace(t, path, "- targets: ['b:2']\n")
	if got := urls(sink.next(t)); got != "http://b:2" {
		t.Fatalf("after rename %s", got)
	}
}

// A ConfigMap volume: the file is a link through "..data" to a
// timestamped directory, and an update renames a new "..data" link over
// the old; no event names the file itself, and the change is seen.
func TestFileSourceFollowsAConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, src string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "targets.yaml"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "- targets: ['a:1']\n")
	path := filepath.Join(dir, "targets.yaml")
	if err := os.Symlink(filepath.Join("..data", "targets.yaml"), path); err != nil {
		t.Fatal(err)
	}
	sink := runFile(t, path)
	if got := urls(sink.next(t)); got != "http://a:1" {
		t.Fatalf("first set %s", got)
	}
	version("..v2", "- targets: ['b:2']\n")
	if got := urls(sink.next(t)); got != "http://b:2" {
		t.Fatalf("after the swap %s", got)
	}
}

// A file written in place and read before the events of that write have
// come (the read set off by an earlier change in the directory, here a
// file created beside it): the read is of the file read last time, so
// it is held back like any write in place. The old source told a write
// in place from a replacement by the events seen before the read, and
// applied this one at once (the flake of
// TestFileTakingTargetsAwayAppliedOnceSettled under load).
func TestFileWrittenInPlaceBeforeItsEventsCame(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "targets.yaml")
	replace(t, path, "- targets: ['a:1', 'b:2']\n")
	sink, fa := runFileAfter(t, path)
	sink.next(t)
	for i := range fileSettleHolds - 1 { // each a hold, none the last
		select {
		case <-fa.notify: // a timer armed before: passed over
		default:
		}
		// Another change in the directory: a timer is armed for it.
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("other-%d", i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		select {
		case <-fa.notify:
		case <-time.After(wait):
			t.Fatal("no timer armed for a file created beside")
		}
		src := fmt.Sprintf("- targets: ['a:%d']\n", 10+i)
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		// Fired at once: the read may come before the write's events.
		if r := sink.drive(t, fa, fileDebounce); r.held == nil {
			t.Fatalf("write %d in place, %q, not held back: set %q, failure %v", i+1, src, urls(r.set), r.fail)
		}
	}
}

package discovery

import (
	"context"
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
}

func newChanSink() *chanSink {
	return &chanSink{updates: make(chan []endpoint.Spec, 16), fails: make(chan error, 16)}
}

func (s *chanSink) Update(set []endpoint.Spec) { s.updates <- set }
func (s *chanSink) Fail(err error)             { s.fails <- err }

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

// A file written in two steps in place (truncated, then filled; or cut
// mid-write): each intermediate state is a failure naming the file and
// line, never an empty or shorter set; the filled file is the next set.
func TestFileSourceWrittenInTwoSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.yaml")
	replace(t, path, "- targets: ['a:1', 'b:2']\n")
	sink := runFile(t, path)
	if got := urls(sink.next(t)); got != "http://a:1,http://b:2" {
		t.Fatalf("first set %s", got)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	sink.failure(t, path+":1: (file): must be a list of target groups")
	if err := os.WriteFile(path, []byte("- targets: ['a:1', 'c:3'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink.failure(t, path+":1: (file): not JSON or YAML")
	select {
	case set := <-sink.updates:
		t.Fatalf("a half-written file replaced the set with %q", urls(set))
	default:
	}
	if err := os.WriteFile(path, []byte("- targets: ['a:1', 'c:3']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := urls(sink.next(t)); got != "http://a:1,http://c:3" {
		t.Fatalf("filled file %s", got)
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

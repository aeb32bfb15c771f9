package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Two gateways on one data directory would run two embedded NATS servers
// on one JetStream store, which corrupt each other (the old binary started
// the second and served). The second is refused at start, exit 1, naming
// the directory, the flag and the first one's pid; a first one killed
// with -9 leaves no stale lock: the next one starts.
func TestSecondServeOnOneDataDirRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := sluiceBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--model", "m",
		"--backend", "http://127.0.0.1:1", "--data-dir", dataDir}

	first, _ := startServeReady(t, bin, args)
	// Bounded only so that the old binary, which serves on, fails the
	// test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second serve on %s: %v, want exit 1\n%s", dataDir, err, out)
	}
	for _, want := range []string{"--data-dir) " + dataDir + " is in use", "pid " + strconv.Itoa(first.Process.Pid), "one gateway per data directory"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second serve's error lacks %q:\n%s", want, out)
		}
	}

	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	next, stderr := startServeReady(t, bin, args) // no stale lock after kill -9
	next.Process.Signal(syscall.SIGTERM)
	if err := serveStopErr(t, next.Wait(), stderr.String()); err != nil {
		t.Errorf("the next gateway's stop: %v", err)
	}
}

// serveStopErr is a `sluice serve` process's end after its SIGTERM (err,
// from Wait; stderr, what it wrote there), nil when the stop was given up
// past its bound, which it logs: exit 1 saying "stop not clean" (app.
// ErrStopNotClean), when the job queue's stop took over 5 s of wall clock,
// which a loaded machine can pass with nothing wrong. For a test whose
// subject is not the stop: app's TestRunSaysAStopPastTheQueueBoundWasNotClean
// asserts that exit on a stop made to hang.
func serveStopErr(t *testing.T, err error, stderr string) error {
	t.Helper()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 && strings.Contains(stderr, "sluice serve: stop not clean: the job queue did not stop within") {
		t.Logf("the stop was given up past its bound (a loaded machine?): exit 1:\n%s", stderr)
		return nil
	}
	return err
}

// startServeReady starts bin with args and returns once it says it is
// ready, with what it writes to stderr; the test's end kills it if it
// still runs.
func startServeReady(t *testing.T, bin string, args []string) (*exec.Cmd, *lineWatch) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	seen := &lineWatch{want: "sluice ready to serve", seen: make(chan struct{})}
	cmd.Stderr = seen // exec copies into it; Wait waits for the copy
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	select {
	case <-seen.seen:
	case <-time.After(time.Minute):
		t.Fatalf("%v never said it was ready", args)
	}
	return cmd, seen
}

// lineWatch is a process's output that closes seen once want was written.
type lineWatch struct {
	want string
	seen chan struct{}
	mu   sync.Mutex
	buf  []byte // since the last newline
	done bool
	all  bytes.Buffer // everything written
}

// String is everything written.
func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	if w.done {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if bytes.Contains(w.buf, []byte(w.want)) {
		close(w.seen)
		w.done, w.buf = true, nil
	} else if i := bytes.LastIndexByte(w.buf, '\n'); i >= 0 {
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// worker --admin as admin.listen is written, host:port, is the admin
// listener at http://host:port (it failed with Go's URL parse error,
// "first path segment in URL cannot contain colon").
func TestWorkerAdminHostPortIsHTTP(t *testing.T) {
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/worker/v1/queue" {
			t.Errorf("worker asked %s", r.URL.Path)
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer admin.Close()
	hostPort := strings.TrimPrefix(admin.URL, "http://")
	code, _, errs := runCLI("worker", "--admin", hostPort, "--admin-token", "wrong")
	if want := "the gateway's admin listener at http://" + hostPort + " refused the worker (401)"; code != 1 || !strings.Contains(errs, want) {
		t.Errorf("exit %d, stderr %q, want 1 and %q", code, errs, want)
	}
}

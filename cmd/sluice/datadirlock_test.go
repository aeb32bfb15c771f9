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

	first := startServeReady(t, bin, args)
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
	next := startServeReady(t, bin, args) // no stale lock after kill -9
	next.Process.Signal(syscall.SIGTERM)
	if err := next.Wait(); err != nil {
		t.Errorf("the next gateway's stop: %v", err)
	}
}

// startServeReady starts bin with args and returns once it says it is
// ready; the test's end kills it if it still runs.
func startServeReady(t *testing.T, bin string, args []string) *exec.Cmd {
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
	return cmd
}

// lineWatch is a process's output that closes seen once want was written.
type lineWatch struct {
	want string
	seen chan struct{}
	mu   sync.Mutex
	buf  []byte // since the last newline
	done bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
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

// Package redistest starts real redis-server processes for tests: a single
// node on a free loopback port (Start) or a small Redis Cluster (StartCluster).
// Each server lives in its own t.TempDir, persists nothing, and is killed in
// t.Cleanup, so tests in parallel packages never share one.
//
// When redis-server is not on PATH the test is skipped locally, but fails
// when the CI environment variable is set: CI installs Redis
// (scripts/test.sh), so a missing binary there is a broken machine, not a
// reason to silently test less.
package redistest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a fresh server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process. Addr stays the same across
// Stop/Restart, so clients configured with it reconnect to the new process.
type Server struct {
	Addr string // 127.0.0.1:port

	t     testing.TB
	port  int
	dir   string
	extra []string // extra redis-server arguments (cluster mode)

	mu     sync.Mutex
	proc   *os.Process // nil while stopped
	exited chan error  // receives the process' exit; its Wait goroutine owns it
}

// Start starts a redis-server on a free loopback port and waits until it
// answers PING. It is stopped in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with extra redis-server arguments (kept across
// Restart), e.g. "--rename-command", "HELLO", "" for a server that speaks
// RESP2 only, as Redis before 6 does.
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := lookRedis(t, "redis-server")
	s := startOnFreePort(t, bin, t.TempDir(), args)
	t.Cleanup(s.Stop)
	return s
}

// Stop kills the server (SIGKILL: to clients it looks like a crash or a
// network cut, which is what failover tests want) and waits for the process
// to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill() // SIGKILL also ends a paused (SIGSTOPped) process
	<-s.exited
	s.proc, s.exited = nil, nil
}

// Restart starts a fresh, empty server on the same address after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.t.Fatalf("redistest: Restart of %s while it is running", s.Addr)
	}
	bin := lookRedis(s.t, "redis-server")
	// The port was just released; redis-server sets SO_REUSEADDR, but give a
	// lingering socket a few tries before giving up.
	var err error
	for range 5 {
		if err = s.launch(bin); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart %s: %v", s.Addr, err)
}

// RestartWith is Restart with other extra redis-server arguments, kept
// for later Restarts: e.g. "--rename-command", "HELLO", "" to put a
// RESP2-only server where a RESP3 one was.
func (s *Server) RestartWith(args ...string) {
	s.t.Helper()
	s.mu.Lock()
	s.extra = args
	s.mu.Unlock()
	s.Restart()
}

// Pause stops the process with SIGSTOP (sigStop): connections stay open
// but nothing is answered, the way a hung or partitioned Redis looks to a
// client (commands time out instead of failing fast). Resume undoes it.
func (s *Server) Pause() { s.signal(sigStop) }

// Resume continues a paused server.
func (s *Server) Resume() { s.signal(sigCont) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		_ = s.proc.Signal(sig)
	}
}

// password is the --requirepass among the extra arguments, or "".
func (s *Server) password() string {
	for i, a := range s.extra {
		if a == "--requirepass" && i+1 < len(s.extra) {
			return s.extra[i+1]
		}
	}
	return ""
}

// doTimeout bounds Do: a hang guard, not a test of Redis' speed. It was
// 2 s, and an assertion's KEYS failed a test under load ("dial ...: i/o
// timeout", flakes7): a test process at nice 19 beside CPU hogs (and its
// redis-server, which inherits the nice) can stall longer than that.
const doTimeout = 20 * time.Second

// Do sends one command to the server and returns its reply as text (see
// do). Handy for assertions such as DBSIZE without a client library.
func (s *Server) Do(args ...string) (string, error) {
	s.mu.Lock()
	pw := s.password()
	s.mu.Unlock()
	return doAuth(s.Addr, doTimeout, pw, args...)
}

// startOnFreePort picks a port whose cluster bus port (port+10000) is also
// free and starts the server there, retrying with another port if something
// else grabbed it in between (other test packages run in parallel).
func startOnFreePort(t testing.TB, bin, dir string, extra []string) *Server {
	t.Helper()
	var lastErr error
	for range 8 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, port: port, dir: dir, extra: extra}
		s.mu.Lock()
		err = s.launch(bin)
		s.mu.Unlock()
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("redistest: could not start redis-server: %v", lastErr)
	return nil
}

// launch starts the process and waits for PING. s.mu must be held.
func (s *Server) launch(bin string) error {
	logPath := filepath.Join(s.dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", logPath,
		"--daemonize", "no",
	}
	args = append(args, s.extra...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // ends when the process does: Stop kills it

	deadline := time.Now().Add(startTimeout)
	for {
		// INFO, not PING: it must be our process answering, not another
		// test's server that won a race for the port (ours then exits).
		info, err := doAuth(s.Addr, 500*time.Millisecond, s.password(), "INFO", "server")
		if err == nil && strings.Contains(info, "process_id:"+strconv.Itoa(cmd.Process.Pid)+"\r\n") {
			s.proc, s.exited = cmd.Process, exited
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("redis-server on port %d exited (%v): %s", s.port, werr, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s", s.port, startTimeout, tail(logPath))
		}
	}
}

// lookRedis finds a Redis binary or skips (locally) / fails (CI) the test.
func lookRedis(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("redistest: %s not on PATH in CI (scripts/test.sh installs it): %v", name, err)
	}
	t.Skipf("redistest: %s not on PATH; install Redis to run this test", name)
	return ""
}

// freePort returns a loopback port that is free, and whose cluster bus port
// (+10000) is free too. Ports come from [20000, 55000) so the bus port stays
// valid; the kernel's own pick (port 0) is used as a random source.
func freePort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port < 20000 || port >= 55000 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair found")
}

// tail returns the end of a log file for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// ClientNames counts the connections the server at addr holds by their
// CLIENT SETNAME (unnamed ones, this call's own among them, left out).
func ClientNames(t testing.TB, addr string) map[string]int {
	t.Helper()
	list, err := do(addr, 5*time.Second, "CLIENT", "LIST")
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	names := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		for _, field := range strings.Fields(line) {
			if name, ok := strings.CutPrefix(field, "name="); ok && name != "" {
				names[name]++
			}
		}
	}
	return names
}

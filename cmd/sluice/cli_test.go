package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sluice-gw/sluice/internal/sim"
)

// runCLI is the command line through run, as main runs it.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// A command line the binary cannot take exits 2 with one line on stderr
// naming the flag (as --help writes it) and what it takes, then where the
// help is: not Go's whole flag list with the error twice, exit 1. Values
// a command used to replace with its default (demo --backends 0, sim
// --slots 0, bench --time-scale 0) are refused alike.
func TestUsageErrorsExit2NamingTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serv"}, `unknown command "serv" (did you mean "serve"?)`},
		// Two letters swapped, the commonest typo, is one edit, as in the
		// config's suggestions (plain Levenshtein counted two and said nothing).
		{[]string{"sevre"}, `unknown command "sevre" (did you mean "serve"?)`},
		{[]string{"serve", "--lsiten", ":8080"}, "unknown flag --lsiten (did you mean --listen?)"},
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"help", "frob"}, `unknown command "frob"`},
		{[]string{"serve", "--lisen", ":8080"}, "unknown flag --lisen (did you mean --listen?)"},
		{[]string{"serve", "--listen"}, "--listen needs a value (ADDR)"},
		{[]string{"serve", "--model", "m", "--backend", "gpu1:8000"}, `--backend: must be an http:// or https:// URL, got "gpu1:8000"`},
		{[]string{"serve", "--model", "m", "--backend", "http://127.0.0.1:1", "--policy", "fastest"}, `--policy: unknown policy "fastest"`},
		{[]string{"serve", "--model", "m"}, "need --config FILE, or --model and at least one --backend"},
		{[]string{"sim", "--count", "x"}, `--count "x": want an integer`},
		{[]string{"sim", "--count", "0"}, "--count 0: want at least 1"},
		{[]string{"sim", "--slots", "0", "--listen", "256.0.0.1:1"}, "--slots 0: want at least 1"},
		{[]string{"sim", "--step", "1"}, `--step "1": want a duration`},
		{[]string{"check"}, "need --config FILE"},
		{[]string{"check", "sluice.yaml"}, `unexpected argument "sluice.yaml" (did you mean --config sluice.yaml?)`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"demo", "--backends", "0", "--duration", "50ms", "--quiet"}, "--backends 0: want at least 1"},
		{[]string{"demo", "--load", "NaN", "--duration", "50ms", "--quiet"}, "--load NaN: want a positive number"},
		// A replay too short to keep one request of the trace ran three
		// empty replays and printed a table of zeros, exit 0.
		{[]string{"demo", "--duration", "1ns", "--quiet"}, "the replay would send no request: 1ns per replay at 1.1x capacity keeps none of the trace's 5550 requests; lengthen --duration"},
		{[]string{"bench", "nosuch"}, `unknown bench mode "nosuch"`},
		{[]string{"bench", "--target", "http://127.0.0.1:1", "--rate", "1", "--time-scale", "0", "--model", "m", "--duration", "100ms", "--quiet"}, "--time-scale 0: want a positive number"},
		{[]string{"bench", "forecast"}, "sluice bench forecast: --servegen DIR is required\nRun 'sluice bench forecast --help'"},
		{[]string{"worker", "--admin-token", "t", "--concurrency", "0"}, "--concurrency 0: want at least 1"},
		{[]string{"worker", "--admin-token", "t", "--max-attempts", "0", "--nats", "nats://127.0.0.1:1", "--admin", "http://127.0.0.1:1"}, "--max-attempts 0: want at least 1"},
		{[]string{"worker", "--admin-token", "t", "--admin", "ftp://127.0.0.1:9091"}, `--admin "ftp://127.0.0.1:9091": want the gateway's admin listener (admin.listen) as http://host:port, or host:port`},
		{[]string{"worker", "--admin-token", "t", "--admin", "http://"}, `--admin "http://": want`},
		{[]string{"chaos", "--backends", "0", "--scenarios", "nosuch"}, "--backends 0: want at least 1"},
		{[]string{"chaos", "--scenarios", "nosuch"}, `--scenarios: unknown scenario "nosuch"`},
	} {
		// Each command line also fails fast on a binary that would take
		// the value (a bad --listen, an unknown scenario, a 100ms replay),
		// so that this test fails rather than hangs on the old code.
		code, out, errs := runCLI(c.args...)
		if code != 2 || !strings.Contains(errs, c.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q on stderr", c.args, code, out, errs, c.want)
			continue
		}
		if strings.Contains(errs, "Flags:") || strings.Count(errs, "\n") > 2 {
			t.Errorf("%q: more than the problem and a pointer to --help:\n%s", c.args, errs)
		}
	}
}

// Help a user asks for is the output: stdout, exit 0, for `help X` as for
// `X --help` (before, `help serve` printed the command list and `help
// frob` exited 0). No arguments is a usage error: the list on stderr, 2.
func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"help", "serve"}, {"serve", "-h"}, {"help", "bench", "forecast"}, {"version", "--help"}} {
		code, out, errs := runCLI(args...)
		want := "Usage: sluice " + strings.Join(args, " ")
		if args[0] == "help" {
			want = "Usage: sluice " + strings.Join(args[1:], " ")
		} else {
			want = strings.TrimSuffix(strings.TrimSuffix(want, " --help"), " -h")
		}
		if code != 0 || !strings.HasPrefix(out, want) || errs != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout", args, code, out, errs, want)
		}
	}
	if code, out, errs := runCLI(); code != 2 || out != "" || !strings.Contains(errs, "Commands:") {
		t.Errorf("no arguments: exit %d, stdout %q, stderr %q; want the command list on stderr, exit 2", code, out, errs)
	}
}

// The worker's secrets come from the environment; --help and a usage
// error print each flag's default, and printed the token and the webhook
// secret with it (into CI logs and terminal scrollback).
func TestWorkerHelpDoesNotPrintSecrets(t *testing.T) {
	t.Setenv("SLUICE_ADMIN_TOKEN", "admin-s3cret-1234")
	t.Setenv("SLUICE_WEBHOOK_SECRET", "hook-s3cret-5678")
	for _, args := range [][]string{{"worker", "--help"}, {"worker", "--bogus"}, {"help", "worker"}} {
		_, out, errs := runCLI(args...)
		if strings.Contains(out+errs, "s3cret") {
			t.Errorf("%q printed a secret from the environment:\n%s%s", args, out, errs)
		}
	}
	// Still read from the environment: no "need --token".
	if code, _, errs := runCLI("worker", "--concurrency", "0"); code != 2 || strings.Contains(errs, "need --token") {
		t.Errorf("SLUICE_ADMIN_TOKEN not taken: exit %d, %q", code, errs)
	}
	t.Setenv("SLUICE_WORKER_TOKEN", "worker-s3cret-9012")
	for _, args := range [][]string{{"worker", "--help"}, {"worker", "--bogus"}} {
		if _, out, errs := runCLI(args...); strings.Contains(out+errs, "s3cret") {
			t.Errorf("%q printed a secret from the environment:\n%s%s", args, out, errs)
		}
	}
	if code, _, errs := runCLI("worker", "--token", "a", "--admin-token", "b"); code != 2 || !strings.Contains(errs, "--token and --admin-token") {
		t.Errorf("two different credentials: exit %d, %q", code, errs)
	}
}

// An address already taken names the flag and the config key that set
// it, and net's own message names the address once (before: "listen
// ADDR: listen tcp ADDR: bind: ..." for serve, and no flag for sim).
func TestTakenPortNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	code, _, errs := runCLI("sim", "--listen", addr)
	if code != 1 || !strings.Contains(errs, "--listen "+addr) || !strings.Contains(errs, "address already in use") {
		t.Errorf("sim: exit %d, stderr %q", code, errs)
	}
	dir := t.TempDir()
	code, _, errs = runCLI("serve", "--listen", addr, "--model", "m", "--backend", "http://127.0.0.1:1", "--admin-listen", "off", "--data-dir", dir, "--log-level", "error")
	if code != 1 || !strings.Contains(errs, "listen (--listen, or listen: in the config): listen tcp "+addr) || strings.Count(errs, addr) != 1 {
		t.Errorf("serve --listen: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI("serve", "--listen", "127.0.0.1:0", "--model", "m", "--backend", "http://127.0.0.1:1", "--admin-listen", addr, "--data-dir", dir, "--log-level", "error")
	if code != 1 || !strings.Contains(errs, "--admin-listen") || !strings.Contains(errs, "address already in use") {
		t.Errorf("serve --admin-listen: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI("serve", "--listen", "127.0.0.1:0", "--model", "m", "--backend", "http://127.0.0.1:1", "--admin-listen", "off", "--pprof", addr, "--data-dir", dir, "--log-level", "error")
	if code != 1 || !strings.Contains(errs, "pprof listen (--pprof): listen tcp "+addr) || strings.Count(errs, addr) != 1 {
		t.Errorf("serve --pprof: exit %d, stderr %q", code, errs)
	}
}

// A taken port (public, admin, or the deprecated --pprof) fails serve
// before anything else starts: the data directory is not even made, so
// no embedded NATS ran and no lock was taken. Before, the listener was bound after the queue,
// the forecast and the probes had started (the data directory with its
// jetstream store and forecast lock was left behind).
func TestTakenPortFailsBeforeAnythingStarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, flags := range [][]string{{"--listen", addr, "--admin-listen", "off"}, {"--listen", "127.0.0.1:0", "--admin-listen", addr},
		{"--listen", "127.0.0.1:0", "--admin-listen", "off", "--pprof", addr}} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"serve", "--model", "m", "--backend", "http://127.0.0.1:1", "--data-dir", dir}, flags...)
		code, _, errs := runCLI(args...)
		if _, statErr := os.Stat(dir); code != 1 || !strings.Contains(errs, "address already in use") || statErr == nil {
			t.Errorf("%v: exit %d, data dir made: %v, stderr %q; want exit 1 before the queue starts", flags, code, statErr == nil, errs)
		}
	}
}

// A failure reported by a package that prefixes its errors with the
// command's name is printed once with it: before, "sluice bench: bench:
// servegen DIR: 0 CSV files ..." and "sluice worker: worker: ...".
func TestFailureNamesTheCommandOnce(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "forecast", "--servegen", t.TempDir()},
		{"worker", "--nats", "nats://127.0.0.1:1", "--admin", "http://127.0.0.1:1", "--admin-token", "x", "--max-attempts", "1"},
	} {
		code, _, errs := runCLI(args...)
		line := strings.TrimSpace(errs[strings.LastIndex(strings.TrimSpace(errs), "\n")+1:])
		if code != 1 || !strings.HasPrefix(line, "sluice "+args[0]+": ") || strings.HasPrefix(line, "sluice "+args[0]+": "+args[0]+":") {
			t.Errorf("%v: exit %d, last line %q; want exit 1 and the command named once", args, code, line)
		}
	}
}

// A data directory that cannot be made names the flag as well as the key
// (it said queue.data_dir to a user who had typed --data-dir).
func TestUnusableDataDirNamesTheFlag(t *testing.T) {
	code, _, errs := runCLI("serve", "--listen", "127.0.0.1:0", "--model", "m", "--backend", "http://127.0.0.1:1",
		"--admin-listen", "off", "--data-dir", "/dev/null/sluice", "--log-level", "error")
	if code != 1 || !strings.Contains(errs, "queue.data_dir (or --data-dir): mkdir /dev/null") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// Through the real binary: a command cut short by SIGINT or SIGTERM
// says which signal stopped it (was "context canceled"), exits 128 + the
// signal when its output is incomplete (demo, bench, chaos: 130, 143; was
// 1, the status of a failure) and 0 for a server (sim), with no
// goroutine dump.
func TestSignalStopsEachCommandCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := privateBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls, stop, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", 1, sim.Config{Instant: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	for _, c := range []struct {
		name    string
		args    []string
		ready   string // a line once it runs, on stdout or stderr
		sig     syscall.Signal
		code    int
		lastErr string // the last line on stderr
	}{
		{"demo", []string{"demo", "--duration", "30s"}, "[1/3]", syscall.SIGINT, 130, "sluice demo: stopped before the end: interrupt signal received"},
		{"bench", []string{"bench", "--target", urls[0], "--rate", "5", "--duration", "60s"}, "bench: ", syscall.SIGTERM, 143,
			"sluice bench: interrupted; the report covers the part that ran: terminated signal received"},
		{"sim", []string{"sim", "--listen", "127.0.0.1:0"}, "capacity for", syscall.SIGTERM, 0, ""},
		// The scenario cut short is left out of the table (it was a row
		// of figures from a gateway being stopped: a leak FAIL); the one
		// finished before it stays.
		{"chaos", []string{"chaos", "--quick", "--calm", "1s", "--duration", "1s", "--scenarios", "ambiguous-json,oversized"}, "chaos: oversized ...",
			syscall.SIGINT, 130, "sluice chaos: stopped before the end: interrupt signal received"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			cmd.Dir = t.TempDir()
			outPipe, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			errPipe, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan struct{}, 2)
			var stdout, stderr bytes.Buffer
			read := func(r io.Reader, into *bytes.Buffer, done chan<- struct{}) {
				defer close(done)
				lines := bufio.NewScanner(r)
				for lines.Scan() {
					into.WriteString(lines.Text() + "\n")
					if strings.Contains(lines.Text(), c.ready) {
						select { // the first is enough; later ones must not block the read
						case ready <- struct{}{}:
						default:
						}
					}
				}
			}
			outDone, errDone := make(chan struct{}), make(chan struct{})
			go read(outPipe, &stdout, outDone)
			go read(errPipe, &stderr, errDone)
			<-ready
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			<-outDone
			<-errDone
			err = cmd.Wait()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			errs := stderr.String()
			if code != c.code || strings.Contains(errs, "goroutine ") || strings.Contains(errs, "context canceled") ||
				(c.lastErr != "" && !strings.HasSuffix(errs, c.lastErr+"\n")) {
				t.Errorf("exit %d, stderr %q; want exit %d and last line %q", code, errs, c.code, c.lastErr)
			}
			if c.name == "chaos" && (strings.Contains(stdout.String(), "\noversized ") || !strings.Contains(stdout.String(), "\nambiguous-json ")) {
				t.Errorf("want the finished scenario's row and none for the one cut short:\n%s", stdout.String())
			}
			// No process of this binary outlives it (chaos runs its
			// gateways as children of bin).
			if left := processesOf(t, bin); len(left) > 0 {
				t.Errorf("left running: %q", left)
			}
		})
	}
}

// processesOf lists the command lines of the running processes whose
// executable is exe.
func processesOf(t *testing.T, exe string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if path, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && path == exe {
			cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			out = append(out, strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

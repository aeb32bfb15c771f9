package main

import (
	"bytes"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestHelpForEverySubcommand(t *testing.T) {
	for _, c := range commands() {
		var out, errb bytes.Buffer
		if code := run([]string{c.name, "--help"}, &out, &errb); code != 0 {
			t.Fatalf("%s --help exited %d: %s", c.name, code, errb.String())
		}
		if !strings.Contains(out.String(), "Usage: sluice "+c.name) {
			t.Fatalf("%s --help printed %q", c.name, out.String())
		}
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sluice ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errb.String())
	}
}

func TestServeRejectsBadSettings(t *testing.T) {
	cases := map[string][]string{
		"policy only":   {"serve", "--policy", "least_conn"},
		"both modes":    {"serve", "--config", "x.yaml", "--model", "m"},
		"bad backend":   {"serve", "--model", "m", "--backend", "gpu1:8000"},
		"bad policy":    {"serve", "--model", "m", "--backend", "http://127.0.0.1:1", "--policy", "fastest"},
		"missing file":  {"serve", "--config", "/nonexistent/sluice.yaml"},
		"stray arg":     {"serve", "extra"},
		"bad log level": {"serve", "--model", "m", "--backend", "http://127.0.0.1:1", "--log-level", "loud"},
	}
	for name, args := range cases {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code == 0 {
			t.Errorf("%s: exited 0", name)
		} else if errb.Len() == 0 {
			t.Errorf("%s: no error message", name)
		}
	}
}

func TestVersionFlagAndBuildInfo(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sluice ") {
			t.Fatalf("%s: %d %q %q", arg, code, out.String(), errb.String())
		}
	}
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "2ea91b1aa0c0ffee2ea91b1aa0c0ffee2ea91b1a"}, {Key: "vcs.time", Value: "2026-12-03T11:28:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := describeBuild(buildStamps{}, info, true), "sluice dev (commit 2ea91b1aa0c0+modified 2026-12-03T11:28:00Z) go1.26.8"; got != want {
		t.Fatalf("built from a checkout: %q, want %q", got, want)
	}
	installed := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}}
	if got, want := describeBuild(buildStamps{}, installed, true), "sluice v0.4.0 go1.26.8"; got != want {
		t.Fatalf("go install @v0.4.0: %q, want %q", got, want)
	}
	if got, want := describeBuild(buildStamps{version: "v1.2.3"}, installed, true), "sluice v1.2.3 go1.26.8"; got != want {
		t.Fatalf("-ldflags version wins: %q, want %q", got, want)
	}
	// A worktree nested in another repository: Go stamps the enclosing
	// repository's commit; scripts/build.sh's stamps name the right one.
	worktree := buildStamps{commit: "7153d42c0ffee7153d42c0ffee7153d42c0ffee0", commitTime: "2026-12-06T01:00:00Z", commitModified: "false"}
	if got, want := describeBuild(worktree, info, true), "sluice dev (commit 7153d42c0ffe 2026-12-06T01:00:00Z) go1.26.8"; got != want {
		t.Fatalf("-ldflags commit wins: %q, want %q", got, want)
	}
	worktree.commitModified = "true"
	if got, want := describeBuild(worktree, &debug.BuildInfo{GoVersion: "go1.26.8"}, true), "sluice dev (commit 7153d42c0ffe+modified 2026-12-06T01:00:00Z) go1.26.8"; got != want {
		t.Fatalf("-ldflags commit, modified tree: %q, want %q", got, want)
	}
}

// TestVersionNamesTheCommit builds the binary as a user does
// (scripts/build.sh, through sluiceBinary) in this checkout — a plain clone
// or a git worktree — and asks it which commit it is.
func TestVersionNamesTheCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "--verify", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	out, err := exec.Command(sluiceBinary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice version: %v\n%s", err, out)
	}
	want := "(commit " + strings.TrimSpace(string(head))[:12]
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), runtime.Version()) {
		t.Fatalf("sluice version printed %q, want %q and %s", out, want, runtime.Version())
	}
}

func TestHelpShowsDoubleDashFlagsAndServeDefaults(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("serve --help: %d", code)
	}
	help := out.String()
	for _, want := range []string{"  --config FILE", "  --listen", "default :8080, all interfaces", "  --backend"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "\n  -config") {
		t.Errorf("serve --help still lists single-dash flags:\n%s", help)
	}
}

package main

import (
	"bytes"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// update rewrites docs/CLI.md: go test ./cmd/sluice -run TestCLIReferenceIsCurrent -update
var update = flag.Bool("update", false, "rewrite docs/CLI.md from the commands' --help")

// modes are the commands and command modes that have their own --help.
func modes() [][]string {
	var out [][]string
	for _, c := range commands() {
		out = append(out, []string{c.name})
		if c.name == "bench" {
			out = append(out, []string{"bench", "forecast"}, []string{"bench", "autoscale"})
		}
	}
	return out
}

// helpOf is `sluice <mode> --help` as a user sees it, with this
// machine's default data directory written as the documented one.
func helpOf(t *testing.T, mode []string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append(append([]string{}, mode...), "--help"), &out, &errb); code != 0 || errb.Len() > 0 {
		t.Fatalf("%s --help: exit %d, stderr %q", strings.Join(mode, " "), code, errb.String())
	}
	return strings.ReplaceAll(out.String(), config.DefaultDataDir(), "~/.local/share/sluice")
}

// docs/CLI.md is every command's --help, so that every flag is documented
// and the page never names a flag the binary lacks.
func TestCLIReferenceIsCurrent(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Command reference\n\n")
	b.WriteString("Generated from the binary by `go test ./cmd/sluice -run TestCLIReferenceIsCurrent -update`;\n")
	b.WriteString("do not edit by hand (the test fails when this file and `sluice <command> --help` differ).\n")
	b.WriteString("Flags take one dash or two (`--listen` or `-listen`), and `--name value` or `--name=value`;\n")
	b.WriteString("a boolean is set with `--quiet` and cleared with `--stream=false`.\n\n")
	b.WriteString("`sluice help <command>` prints the same help as `sluice <command> --help`, on stdout.\n")
	b.WriteString("Exit status: 0 done (help included), 1 failed, 2 a command line it cannot take (an unknown\n")
	b.WriteString("command or flag, a missing or invalid value, a stray argument), with one line on stderr naming\n")
	b.WriteString("the flag and what it takes. A command stopped by SIGINT or SIGTERM before the end (`demo`,\n")
	b.WriteString("`bench`, `chaos`) says which signal and exits 130 or 143, as a shell reports a process the\n")
	b.WriteString("signal ended. `serve`, `sim` and `worker` stopped by a signal exit 0: that is how they end;\n")
	b.WriteString("`serve` and `worker` exit 1 when that stop was not clean: the job queue's stop given up past\n")
	b.WriteString("its bound (NATS answering nothing), the process gone as after a crash, with one ERROR line.\n")
	var short = map[string]string{}
	for _, c := range commands() {
		short[c.name] = c.short
	}
	for _, m := range modes() {
		name := strings.Join(m, " ")
		b.WriteString("\n## sluice " + name + "\n\n")
		if s, ok := short[name]; ok {
			b.WriteString(strings.ToUpper(s[:1]) + s[1:] + ".\n\n")
		}
		b.WriteString("```\n" + helpOf(t, m) + "```\n")
	}
	got := b.String()
	const path = "../../docs/CLI.md"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; generate it: go test ./cmd/sluice -run TestCLIReferenceIsCurrent -update", err)
	}
	if string(want) != got {
		t.Errorf("docs/CLI.md is stale; regenerate: go test ./cmd/sluice -run TestCLIReferenceIsCurrent -update")
	}
}

// Every `sluice <command> --flag` written in the README and the operator
// docs is a flag of that command (Go's flag package takes -flag too, and
// the docs wrote `bench forecast -servegen`).
func TestDocumentedFlagsExist(t *testing.T) {
	known := map[string]map[string]bool{}
	flagLine := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)
	for _, m := range modes() {
		set := map[string]bool{"help": true}
		for _, f := range flagLine.FindAllStringSubmatch(helpOf(t, m), -1) {
			set[f[1]] = true
		}
		known[strings.Join(m, " ")] = set
	}
	// A command line: `sluice NAME [MODE] ...` up to the end of the code
	// span or line (a line ending in \\ goes on), or a shell comment.
	cmdLine := regexp.MustCompile("sluice (serve|check|worker|sim|bench|demo|chaos|version)( forecast| autoscale)?((?:\\\\\n|[^`\\n#|;&)])*)")
	flagRef := regexp.MustCompile(`(?:^|\s)--?([a-z][a-z0-9-]*)`)
	for _, doc := range []string{"../../README.md", "../../docs/DEPLOY.md", "../../docs/TROUBLESHOOTING.md", "../../docs/SIMULATOR.md",
		"../../docs/CONFIG.md", "../../docs/STATUS.md", "../../docs/METRICS.md", "../../docs/SECURITY.md"} {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmdLine.FindAllStringSubmatch(string(text), -1) {
			mode := m[1] + m[2]
			for _, f := range flagRef.FindAllStringSubmatch(m[3], -1) {
				if !known[mode][f[1]] {
					t.Errorf("%s: %q names --%s, which sluice %s does not have", doc, strings.TrimSpace(m[0]), f[1], mode)
				}
			}
		}
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelpForEverySubcommand(t *testing.T) {
	for _, c := range commands() {
		if c.name == "version" {
			continue
		}
		var out, errb bytes.Buffer
		if code := run([]string{c.name, "--help"}, &out, &errb); code != 0 {
			t.Fatalf("%s --help exited %d: %s", c.name, code, errb.String())
		}
		if !strings.Contains(errb.String(), "Usage: sluice "+c.name) {
			t.Fatalf("%s --help printed %q", c.name, errb.String())
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
		"nothing":       {"serve"},
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

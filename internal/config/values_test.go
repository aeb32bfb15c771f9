package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// leafPaths lists the key paths of every field of kind want (reached
// through sections, not lists or maps) in t, e.g. "retry.budget_ratio".
func leafPaths(t reflect.Type, path string, want func(reflect.Type) bool) []string {
	var out []string
	for name, ft := range yamlFields(t) {
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		sub := joinKey(path, name)
		switch {
		case want(ft):
			out = append(out, sub)
		case ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler):
			out = append(out, leafPaths(ft, sub, want)...)
		}
	}
	return out
}

// nested writes path: value as nested flow sections: "a.b: v" is
// "a: {b: v}".
func nested(path, value string) string {
	keys := strings.Split(path, ".")
	s := value
	for i := len(keys) - 1; i > 0; i-- {
		s = "{" + keys[i] + ": " + s + "}"
	}
	return keys[0] + ": " + s + "\n"
}

// No key takes a negative duration, NaN or an infinity: each is refused
// naming its key. Before, 13 durations and 9 floats were taken where no check
// of the key looked (shutdown_grace: -5s, a grace already over;
// health.active.interval: -5s turned probes off; retry.budget_ratio: .nan
// passed its range check, as NaN fails every comparison).
func TestNoKeyTakesANegativeDurationOrNaN(t *testing.T) {
	root := reflect.TypeFor[Config]()
	durations := leafPaths(root, "", func(t reflect.Type) bool { return t == reflect.TypeFor[Duration]() })
	floats := leafPaths(root, "", func(t reflect.Type) bool { return t.Kind() == reflect.Float64 })
	if len(durations) < 40 || len(floats) < 10 {
		t.Fatalf("found %d durations and %d floats: the walk is broken", len(durations), len(floats))
	}
	check := func(path, value string) {
		t.Helper()
		_, err := Parse([]byte(nested(path, value) + minimal))
		if err == nil || !strings.Contains(err.Error(), path+": ") {
			t.Errorf("%s: %s: %v, want an error naming the key", path, value, err)
		}
	}
	for _, p := range durations {
		check(p, "-1s")
	}
	for _, p := range floats {
		check(p, ".nan")
		check(p, ".inf")
		check(p, "-.inf")
	}
}

// Counts whose 0 means a default took a negative one as that default
// (a typo for a bound silently became another bound); a size whose
// multiple overflows was "must be positive", naming the wrong problem.
func TestNegativeCountsAndOverflowingSizesRefused(t *testing.T) {
	for src, want := range map[string]string{
		"health: {active: {passes: -1}}":      "health.active.passes: must be 0 (default 2) or more, got -1",
		"health: {active: {fails: -1}}":       "health.active.fails: must be 0 (default 2) or more",
		"breaker: {min_requests: -1}":         "breaker.min_requests: must be 0 (default 20) or more",
		"breaker: {half_open_probes: -1}":     "breaker.half_open_probes: must be 0 (default 1) or more",
		"admission: {default_max_tokens: -1}": "admission.default_max_tokens: must be 0 or more",
		"admission: {max_queued_tokens: -1}":  "admission.max_queued_tokens: must be 0 (no bound) or more",
		"retry: {min_per_second: -1}":         "retry.min_per_second: must be 0 or more",
		"max_body_bytes: 9000000000GiB":       `max_body_bytes: size "9000000000GiB" is too large`,
		"shutdown_grace: 99999999999h":        `shutdown_grace: invalid duration "99999999999h" (use e.g. 500ms, 5s, 2m; at most 2562047h)`,
		"timeouts: {connect: -500ms}":         `timeouts.connect: cannot be negative, got "-500ms"`,
		"retry: {budget_ratio: .NaN}":         `retry.budget_ratio: want a finite number, got ".NaN"`,
	} {
		_, err := Parse([]byte(src + "\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "line 1: "+want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
}

// A file's problems are listed up to maxProblems, then counted: a 4 MB
// file of two million fallbacks to an unknown model made a 123 MB
// message and 1.1 GB of memory, in a reload inside the gateway too.
func TestProblemsListedUpToABound(t *testing.T) {
	const n = 5000
	src := "models:\n  - name: m\n    backends: [{url: 'http://127.0.0.1:9'}]\n    fallbacks: [" +
		strings.Repeat("x, ", n-1) + "x]\n"
	dir := t.TempDir()
	path := dir + "/F"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	errs := flatten(err)
	if len(errs) != maxProblems+1 {
		t.Fatalf("%d problems listed, want %d and a count", len(errs), maxProblems)
	}
	if got, want := errs[maxProblems].Error(), path+": and 4800 more problems (the first 200 are listed)"; got != want {
		t.Fatalf("last: %q, want %q", got, want)
	}
	if !strings.HasPrefix(errs[0].Error(), path+":4: models[0].fallbacks[0]: unknown model") {
		t.Fatalf("first: %q", errs[0])
	}
	// Unknown keys past the bound, with a problem found by validation.
	src = "models: [{name: m, backends: [{url: nope}]}]\n" + strings.Repeat("a: 1\n", 3*maxProblems)
	_, err = Parse([]byte(src))
	if errs := flatten(err); len(errs) > 2*maxProblems+2 || !strings.Contains(err.Error(), "models[0].backends[0].url") {
		t.Fatalf("%d problems; %v", len(errs), errs[len(errs)-1])
	}
}

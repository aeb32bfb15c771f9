package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What `sluice check` and `sluice serve --config` print for a file the YAML
// library refuses or that is not a section of keys: FILE:LINE: and the
// problem in the file's terms, never the library's stages or Go types
// ("go-yaml load error in scanner", "yaml: construct errors",
// "<unknown position>") and never an empty key path ("FILE:1: : ...").
func TestYAMLProblemsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"tab", "listen: 127.0.0.1:8080\nmodels:\n\t- name: m\n",
			"F:3: a tab where YAML wants spaces (indent with spaces, never tabs)"},
		{"duplicate", minimal + "listen: ':9'\nlisten: ':10'\n",
			`F:7: listen: already written at line 6 (a key appears once in its section)`},
		{"unclosed", "models: [{name: m\n",
			"F:2: YAML syntax: did not find expected ',' or '}' (column 1)"},
		{"list", "- a\n- b\n",
			"F:1: the file must be a section of keys (listen:, models:, ...), got a list"},
		{"empty", "",
			"F: models: at least one model is required"},
		{"comments only", "# nothing yet\n",
			"F: models: at least one model is required"},
		// These three named no key or no line, or the library's types.
		{"not UTF-8", "listen: \"\xff:8080\"\n" + minimal,
			"F:1: not UTF-8 text: byte 0xff at column 10 (save the file as UTF-8)"},
		{"alias of a list for one value", "models:\n  - name: m\n    backends: &b [{url: 'http://127.0.0.1:9'}]\n    policy: *b\n",
			"F:4: models[0].policy: want one value, got *b, a list (line 3)"},
		{"alias of a wrong value", "models:\n  - name: &n [m]\n    backends: [{url: 'http://127.0.0.1:9', weight: &w heavy}]\n  - {name: m2, backends: [{url: 'http://127.0.0.1:9', weight: *w}]}\n",
			"F:2: models[0].name: want a string, got a list\n" +
				"F:3: models[0].backends[0].weight: want a whole number, got \"heavy\"\n" +
				"F:4: models[1].backends[0].weight: want a whole number, got \"heavy\" (through *w, line 3)"},
		{"a model that is a list", "models:\n  - [a]\n",
			"F:2: models[0]: want a section of keys, got a list"},
		{"two documents", "---\n" + minimal + "---\nlisten: ':1'\n",
			"F:7: a second YAML document starts here (---): a config file is one document"},
		{"repeated nested key", "retry:\n  attempts: 2\n  attempts: 3\n" + minimal,
			"F:3: retry.attempts: already written at line 2 (a key appears once in its section)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "F")
			if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			_, err := Load("F")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

// A negative rate_limits.max_keys is refused naming the key and what is
// allowed (it silently meant the default, 100000).
func TestNegativeMaxKeysRefused(t *testing.T) {
	_, err := Parse([]byte(minimal + "rate_limits: {max_keys: -1}\n"))
	want := "line 6: rate_limits.max_keys: must be >= 0 (0 or unset: 100000), got -1"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if _, err := Parse([]byte(minimal + "rate_limits: {max_keys: 0}\n")); err != nil {
		t.Fatalf("0 (the default) refused: %v", err)
	}
}

// One run lists every problem: an unknown key or a value of the wrong kind
// (checkSchema) does not hide a bad value elsewhere (validation), and
// nothing is reported twice or about a default left where a value was
// refused.
func TestSchemaAndValueProblemsAtOnce(t *testing.T) {
	text := `models:
  - name: m
    backends:
      - url: gpu1:8000
        weight: -2
        max_fails: 3
      - http://a
rate_limits:
  store: mongo
  per_key: {requests: "fast"}
`
	_, err := Parse([]byte(text))
	want := `line 6: models[0].backends[0].max_fails: unknown key; it belongs under health.max_fails; allowed here: api_key, engine, max_concurrency, pass_client_auth, tls, upstream_model, url, weight
line 7: models[0].backends[1]: want a section of keys, got "http://a"
line 10: rate_limits.per_key.requests: limit "fast": fast: unknown parameter (want rate=, burst=, delay= or nodelay)
line 9: rate_limits.store: "mongo", want local or redis
line 4: models[0].backends[0].url: must be an http:// or https:// URL, got "gpu1:8000"
line 5: models[0].backends[0].weight: must be >= 0`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

// A key written again is refused once per repeat, naming where it was first
// written, in a section and in a map of names alike. The YAML library
// compares every pair of keys: n repeats made n*(n-1)/2 problems (1000
// "listen:" lines, 13 KB, took 24 s and a 29 MB message to refuse).
func TestRepeatedKeyReportedOncePerRepeat(t *testing.T) {
	text := minimal + "listen: ':1'\nlisten: ':2'\nlisten: ':3'\n" +
		"rate_limits:\n  keys:\n    k1: {tokens_per_minute: 1}\n    k1: {tokens_per_minute: 2}\n"
	_, err := Parse([]byte(text))
	want := `line 7: listen: already written at line 6 (a key appears once in its section)` + "\n" +
		`line 8: listen: already written at line 6 (a key appears once in its section)` + "\n" +
		`line 12: rate_limits.keys[` + KeyRef("k1") + `]: already written at line 11 (a key appears once in its section)`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}

	const n = 3000
	_, err = Parse([]byte(minimal + strings.Repeat("listen: ':1'\n", n)))
	errs := flatten(err)
	if len(errs) != maxProblems+1 || errs[maxProblems].Error() != "and 2799 more problems (the first 200 are listed)" {
		t.Fatalf("%d repeats of a key: %d problems, the last %v", n, len(errs), errs[len(errs)-1])
	}
}

// A validation problem at or under a key the schema check refused is left
// out (the default there is not the operator's); one elsewhere is kept.
func TestCoveredByRefusedKey(t *testing.T) {
	refused := refusedKeys([]error{
		&FieldError{Key: "models"},
		&FieldError{Key: "rate_limits.keys.a.b"},
		errors.New("not a field error"),
	})
	for key, want := range map[string]bool{
		"models":                    true,
		"models[3].backends[0].url": true,
		"models_x":                  false,
		"rate_limits.keys.a.b":      true,
		"rate_limits.keys.a.b.rpm":  true,
		"rate_limits.keys.a":        false,
		"rate_limits.keys.a.bc":     false,
		"listen":                    false,
	} {
		if got := covered(key, refused); got != want {
			t.Errorf("covered(%q) = %v, want %v", key, got, want)
		}
	}
	if !covered("anything", refusedKeys([]error{&FieldError{Problem: "the file"}})) {
		t.Error("a problem with the file as a whole does not cover its keys")
	}
}

// A top-level section written inside a model is named as top-level: the
// hint read "models[0].admission: unknown key; it belongs under
// admission", pointing at the key the reader had just written.
func TestTopLevelSectionInsideAModel(t *testing.T) {
	_, err := Parse([]byte("models:\n  - name: m\n    admission:\n      max_wait: 5s\n    backends: [{url: http://a:1}]\n"))
	want := "line 3: models[0].admission: unknown key; it is a top-level key (write it unindented, outside models[0]); allowed here: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got\n%v\nwant the prefix\n%s", err, want)
	}
}

// A backend URL ending in /v1 (an SDK's base URL pasted) is refused with
// the URL to write: the request's path is added to it, so every request
// asked for /v1/v1/chat/completions and got the backend's 404. A base
// path before /v1 (a hosted API's /openai/v1) keeps its prefix.
func TestBackendURLEndingInV1(t *testing.T) {
	for in, fix := range map[string]string{
		"http://127.0.0.1:8000/v1":        "http://127.0.0.1:8000",
		"https://api.groq.com/openai/v1/": "https://api.groq.com/openai",
		"http://u:secret@gpu1:8000/v1":    "http://u:xxxxx@gpu1:8000",
	} {
		_, err := Parse([]byte("models:\n  - name: m\n    backends:\n      - url: " + in + "\n"))
		want := fmt.Sprintf("line 4: models[0].backends[0].url: %q ends in /v1", strings.Replace(in, "secret", "xxxxx", 1))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("write %q", fix)) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v\nwant %s ... write %q", in, err, want, fix)
		}
	}
	for _, ok := range []string{"http://gpu1:8000", "https://api.example/openai", "http://gpu1:8000/v1beta", "http://gpu1:8000/llm-v1"} {
		if _, err := Parse([]byte("models:\n  - name: m\n    backends:\n      - url: " + ok + "\n")); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

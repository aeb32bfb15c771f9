package config

import (
	"strings"
	"testing"
)

// An environment variable the file names but the environment does not
// set is refused, naming it, its key and its line. It used to read as "":
// a forgotten SLUICE_ADMIN_TOKEN started the admin listener without a
// token, and "pa$word" was silently "pa".
func TestUnsetEnvironmentVariableRefused(t *testing.T) {
	t.Setenv("SLUICE_SET", "x")
	for src, want := range map[string]string{
		"admin: {token: ${SLUICE_UNSET_TOKEN}}\n" + minimal:      "line 1: admin.token: environment variable SLUICE_UNSET_TOKEN is not set",
		"admin:\n  token: \"pa$word\"\n" + minimal:               "line 2: admin.token: environment variable word is not set (${word:-} reads it as empty; $$ is a literal $)",
		"admin:\n  token: ${SLUICE_SET}$SLUICE_NOPE\n" + minimal: "line 2: admin.token: environment variable SLUICE_NOPE is not set",
	} {
		_, err := Parse([]byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
	// Listed with the file's other problems, not what the empty value
	// would make of its key (an URL that is not one).
	_, err := Parse([]byte("retry: {attempts: 0}\nmodels:\n  - name: m\n    backends:\n      - url: ${SLUICE_UNSET_URL}\n"))
	want := "line 5: models[0].backends[0].url: environment variable SLUICE_UNSET_URL is not set (${SLUICE_UNSET_URL:-} reads it as empty; $$ is a literal $)\n" +
		"line 1: retry.attempts: must be between 1 and 10, got 0"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

// A variable's value is a value, never YAML: a quote, a brace, a newline
// or "key: value" in it neither breaks the file nor sets another key, and
// the lines of the keys after it stay the file's. The text used to be
// expanded before parsing: a secret with a newline moved every later
// line, one with "\nlisten: ..." set listen.
func TestEnvironmentValueIsOneValue(t *testing.T) {
	t.Setenv("SLUICE_TOKEN", "a\"b}\nlisten: 127.0.0.1:1\n# c")
	c, err := Parse([]byte("admin: {token: ${SLUICE_TOKEN}}\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "a\"b}\nlisten: 127.0.0.1:1\n# c" || c.Listen == "127.0.0.1:1" {
		t.Fatalf("token %q, listen %q", c.Admin.Token, c.Listen)
	}
	_, err = Parse([]byte("admin:\n  token: \"${SLUICE_TOKEN}\"\nretry: {attempts: 0}\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), "line 3: retry.attempts") {
		t.Fatalf("a later key's line moved: %v", err)
	}
}

// What the references still mean: ${VAR} in a flow mapping, $VAR, $$ for
// a literal $, and a plain ${VAR} whose value is a number read as one.
func TestEnvironmentReferences(t *testing.T) {
	t.Setenv("SLUICE_W", "7")
	t.Setenv("SLUICE_K", "k$1")
	src := "admin: {token: \"$$${SLUICE_K}-$SLUICE_W-$${SLUICE_W}\"}\n" +
		"models:\n  - name: m\n    backends:\n      - {url: 'http://a:1', weight: ${SLUICE_W}}\n"
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "$k$1-7-${SLUICE_W}" {
		t.Errorf("token %q", c.Admin.Token)
	}
	if c.Models[0].Backends[0].Weight != 7 {
		t.Errorf("weight %d, want 7", c.Models[0].Backends[0].Weight)
	}
	// ${NAME:-default}: the default when NAME is unset or empty (a
	// Kubernetes Secret key marked optional sets no variable).
	t.Setenv("SLUICE_EMPTY", "")
	c, err = Parse([]byte("admin: {token: ${SLUICE_UNSET_X:-}}\n" +
		"models:\n  - name: m\n    backends:\n      - {url: '${SLUICE_UNSET_X:-http://a:1}', weight: ${SLUICE_EMPTY:-3}, api_key: \"${SLUICE_K:-d}\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Models[0].Backends[0]; c.Admin.Token != "" || b.URL != "http://a:1" || b.Weight != 3 || b.APIKey != "k$1" {
		t.Errorf("defaults: token %q, url %q, weight %d, api_key %q", c.Admin.Token, b.URL, b.Weight, b.APIKey)
	}
	// A comment's reference is not the config's.
	if _, err := Parse([]byte("# ${SLUICE_NOT_SET_ANYWHERE}\n" + minimal)); err != nil {
		t.Errorf("a reference in a comment: %v", err)
	}
}

// FuzzMarkEnv: the stand-ins change no line (error lines are the file's),
// a text without ${NAME} is left as is, and each name is one markEnv
// found between "${" and "}".
func FuzzMarkEnv(f *testing.F) {
	for _, s := range []string{"", "a: ${X}\n", "$${X} ${Y}$${", "${}${A-B}${_1}x", "$", "${X", "a: {b: ${C}}\n# ${D}\n", "${A:-}${B:-x}y}${C:-\n}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, names := markEnv(data)
		if strings.Count(string(out), "\n") != strings.Count(string(data), "\n") {
			t.Fatalf("lines changed: %q -> %q", data, out)
		}
		if len(names) == 0 && string(out) != string(data) {
			t.Fatalf("no names but changed: %q -> %q", data, out)
		}
		for _, r := range names {
			ref := "${" + r.name + "}"
			if r.hasDef {
				ref = "${" + r.name + ":-" + r.def + "}"
			}
			if r.name == "" || !strings.Contains(string(data), ref) || strings.ContainsAny(r.def, "}\n") {
				t.Fatalf("reference %+v not in %q", r, data)
			}
		}
	})
}

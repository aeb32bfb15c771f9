package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// keyPaths collects every key path of the config schema ("health.max_fails",
// "models[].backends[].url"), as checkSchema reads it.
func keyPaths(t reflect.Type, path string, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	for name, ft := range yamlFields(t) {
		p := joinKey(path, name)
		*out = append(*out, p)
		keyPaths(ft, p, out)
	}
}

// exampleSections splits examples/sluice.yaml into its top-level sections:
// each top-level key (set, or commented out at the first column) with the
// lines up to the next one.
func exampleSections(src string) map[string]string {
	top := regexp.MustCompile(`^(?:#\s?)?([a-z_]+):(?:\s|$)`)
	out := map[string]string{}
	cur := ""
	for line := range strings.Lines(src) {
		if m := top.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "# ") {
			cur = m[1]
		} else if m != nil && strings.HasPrefix(line, "#") && cur == "" {
			cur = m[1]
		}
		out[cur] += line
	}
	return out
}

// README's configuration reference is examples/sluice.yaml ("every key, its
// default and its meaning"). Every key path the config accepts is written
// in the section of its top-level key, set or commented out (in a flow
// mapping or a comment's list of further keys too): unlike
// TestExampleConfigNamesEveryKey, which matches names anywhere, a new key
// reusing a name another section has (timeout, enabled, addrs) is caught.
func TestExampleConfigHasEveryKeyPath(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sections := exampleSections(string(src))
	var paths []string
	keyPaths(reflect.TypeFor[Config](), "", &paths)
	for _, p := range paths {
		if strings.HasPrefix(p, "queue.worker_token") {
			continue // refused with a message saying it is gone (queue.go); the file says so too
		}
		parts := strings.Split(strings.ReplaceAll(p, "[]", ""), ".")
		sec, ok := sections[parts[0]]
		if !ok {
			t.Errorf("%s: no %s section in examples/sluice.yaml", p, parts[0])
			continue
		}
		leaf := parts[len(parts)-1]
		if len(parts) > 1 && !regexp.MustCompile(`\b`+leaf+`:`).MatchString(sec) {
			t.Errorf("%s: %s not written in examples/sluice.yaml's %s section", p, leaf, parts[0])
		}
	}
}

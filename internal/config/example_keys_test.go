package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// keyNames collects every key name of the config schema, as
// checkSchema reads it, with the path of its first appearance.
func keyNames(t reflect.Type, path string, out map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	for name, ft := range yamlFields(t) {
		p := joinKey(path, name)
		if _, ok := out[name]; !ok {
			out[name] = p
		}
		keyNames(ft, p, out)
	}
}

// exampleKey is a key written in examples/sluice.yaml, set or commented
// out: "  key: value", "# key: value", "- key: value".
var exampleKey = regexp.MustCompile(`^\s*(?:#\s*)?(?:-\s+)?([a-z_]+):(?:\s|$)`)

// examples/sluice.yaml is the annotated reference (README,
// "Configuration"): every key name the config accepts is written in it,
// set or commented out, and every key it writes is one the config
// accepts. Names, not paths: a name used in several sections (timeout,
// enabled) is found once, so a new section reusing one is not caught.
func TestExampleConfigNamesEveryKey(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	schema := map[string]string{}
	keyNames(reflect.TypeFor[Config](), "", schema)
	written := map[string]bool{}
	for line := range strings.Lines(string(src)) {
		if m := exampleKey.FindStringSubmatch(line); m != nil {
			written[m[1]] = true
		}
	}
	for name, path := range schema {
		if name == "worker_token" {
			continue // refused with a message saying it is gone (queue.go); the file says so too
		}
		if !written[name] && !regexp.MustCompile(`\b`+name+`:`).Match(src) {
			t.Errorf("%s: not in examples/sluice.yaml", path)
		}
	}
	// Words of the comments that look like keys: a targets file's
	// "targets:" (file discovery) and "empty: ..." in prose.
	notKeys := []string{"targets", "empty"}
	for name := range written {
		if _, ok := schema[name]; !ok && !slices.Contains(notKeys, name) {
			t.Errorf("examples/sluice.yaml names %q, which is no config key", name)
		}
	}
}

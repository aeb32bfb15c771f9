package config

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// FieldError is one problem with one key of the config: the key path as
// written in the file ("models[0].backends[1].url"), the line it is on (0
// when the config did not come from a file) and what is wrong, in terms of
// what is allowed, never of Go types.
type FieldError struct {
	File    string // set by Load
	Key     string
	Line    int
	Problem string
	// more, when not 0, makes this the last of a list cut at
	// maxProblems: the count of the problems left out.
	more int
}

// maxProblems bounds the problems one config's errors list. A 4 MB file
// of two million fallbacks to an unknown model made as many problems:
// 19 s, 1.1 GB of memory and a 123 MB message, on a reload inside the
// running gateway too. Past the first few hundred a reader wants the
// file fixed, not more lines.
const maxProblems = 200

// report adds e to errs, or, past maxProblems, counts it in the last.
func report(errs *[]error, e error) {
	switch n := len(*errs); {
	case n < maxProblems:
		*errs = append(*errs, e)
	case n == maxProblems:
		*errs = append(*errs, &FieldError{more: 1})
	default:
		if fe, ok := (*errs)[n-1].(*FieldError); ok && fe.more > 0 {
			fe.more++
		} else {
			*errs = append(*errs, &FieldError{more: 1})
		}
	}
}

func (e *FieldError) Error() string {
	if e.more > 0 {
		if e.File != "" {
			return fmt.Sprintf("%s: and %d more problems (the first %d are listed)", e.File, e.more, maxProblems)
		}
		return fmt.Sprintf("and %d more problems (the first %d are listed)", e.more, maxProblems)
	}
	if e.Key == "" { // the file as a whole: its syntax, its top level
		switch {
		case e.File != "" && e.Line > 0:
			return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Problem)
		case e.File != "":
			return e.File + ": " + e.Problem
		case e.Line > 0:
			return fmt.Sprintf("line %d: %s", e.Line, e.Problem)
		}
		return e.Problem
	}
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Problem)
	case e.File != "":
		return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Problem)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Problem)
	}
	return e.Key + ": " + e.Problem
}

// keyLines maps each key path present in a file to its line.
type keyLines map[string]int

// lineOf is the line of key, or of its nearest parent in the file (a
// default that fails validation is reported where its section is, or not
// at all when the section is absent).
func (l keyLines) lineOf(key string) int {
	for key != "" {
		if n, ok := l[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// inFile names the file in every FieldError of err; other errors (YAML
// syntax) get it as a prefix.
func inFile(path string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for i, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) {
			fe.File = path
		} else {
			errs[i] = fmt.Errorf("config %s: %w", path, e)
		}
	}
	return errors.Join(errs...)
}

// annotate gives validation errors the line of their key.
func (l keyLines) annotate(err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Line == 0 {
			fe.Line = l.lineOf(fe.Key)
		}
	}
	return errors.Join(errs...)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// scalarFormType is a section type that may also be written as one
// value, a string (queue.batch_webhooks' entries: a URL, or a section).
var scalarFormType = reflect.TypeFor[interface{ scalarForm() }]()

// checkSchema walks the YAML tree against the Go type it will be decoded
// into, before decoding, so that an unknown key or a value of the wrong
// kind is reported with its key path, its line and what is allowed
// (the decoder's own errors name Go types: "field x not found in type
// config.Retry", "cannot construct !!str into int"). It records every key's
// line for validation errors.
func checkSchema(n *yaml.Node, t reflect.Type, path string, lines keyLines, errs *[]error) {
	if n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkSchema(c, t, path, lines, errs)
		}
		return
	}
	if path != "" {
		if _, seen := lines[path]; !seen {
			lines[path] = n.Line
		}
	}
	if n.Kind == yaml.AliasNode {
		checkAlias(n, t, path, errs)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(problem string, args ...any) {
		p := fmt.Sprintf(problem, args...)
		if n.Kind == yaml.ScalarNode && holdsKeys(path) {
			// An API key written where a list or section belongs (keys:
			// sk-abc, keys: [sk-abc]) is not quoted: the refusal reaches
			// the log and the admin /status.
			p = strings.ReplaceAll(p, valueName(n), "a value not shown (API keys are secrets)")
		}
		report(errs, &FieldError{Key: path, Line: n.Line, Problem: p})
	}
	switch {
	case t.Implements(scalarFormType) && n.Kind == yaml.ScalarNode:
		if problem := scalarProblem(n, reflect.TypeFor[string]()); problem != "" {
			bad("%s", problem)
		}
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		if n.Kind != yaml.ScalarNode {
			// Name the value wanted: "a single value" left the reader to
			// guess the unit (max_wait: [1]).
			bad("want %s, got %s", singleValueName(t), kindName(n))
			return
		}
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := v.UnmarshalText([]byte(n.Value)); err != nil {
			bad("%v", err)
		}
	case t == reflect.TypeFor[time.Duration]():
		if n.Kind != yaml.ScalarNode {
			bad("want a duration such as 500ms or 5s, got %s", kindName(n))
		} else if _, err := time.ParseDuration(n.Value); err != nil && n.ShortTag() != "!!int" {
			bad("want a duration such as 500ms or 5s, got %s", valueName(n))
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if path == "" {
				bad("the file must be a section of keys (listen:, models:, ...), got %s", kindName(n))
			} else {
				bad("want a section of keys, got %s", kindName(n))
			}
			return
		}
		checkSection(n, t, path, lines, errs)
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("want a map of names to values, got %s", kindName(n))
			return
		}
		first := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if writtenAgain(k, path, first, errs) {
				continue
			}
			sub := entryKey(path, k.Value)
			lines[sub] = k.Line
			checkSchema(v, t.Elem(), sub, lines, errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("want a list, got %s", kindName(n))
			return
		}
		for i, c := range n.Content {
			checkSchema(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, errs)
		}
	default:
		if problem := scalarProblem(n, t); problem != "" {
			bad("%s", problem)
		}
	}
}

// checkAlias checks that an alias (*name) leads to a value of the kind
// its key takes: one value, a list or a section. The value itself was
// checked where its anchor is; an alias is not followed further, so that
// aliases of aliases cost one step each, not the size they expand to.
// Before, an alias of a list where one value is wanted reached the
// decoder, whose refusal read "cannot construct !!seq into string",
// with no key.
func checkAlias(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	target := n.Alias
	for target != nil && target.Kind == yaml.AliasNode {
		target = target.Alias
	}
	if target == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	want := yaml.ScalarNode
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshaler) || t == reflect.TypeFor[time.Duration]():
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		want = yaml.MappingNode
	case t.Kind() == reflect.Slice:
		want = yaml.SequenceNode
	}
	if target.Kind == want || target.Kind == yaml.ScalarNode && target.ShortTag() == "!!null" {
		if want == yaml.ScalarNode {
			// One value: checked as if written here (no recursion).
			before := len(*errs)
			checkSchema(target, t, path, keyLines{}, errs)
			for _, e := range (*errs)[before:] {
				if fe, ok := e.(*FieldError); ok && fe.more == 0 {
					fe.Line = n.Line
					fe.Problem += fmt.Sprintf(" (through *%s, line %d)", n.Value, target.Line)
				}
			}
		}
		return
	}
	what := map[yaml.Kind]string{yaml.ScalarNode: "one value", yaml.MappingNode: "a section of keys", yaml.SequenceNode: "a list"}
	report(errs, &FieldError{Key: path, Line: n.Line, Problem: fmt.Sprintf(
		"want %s, got *%s, %s (line %d)", what[want], n.Value, kindName(target), target.Line)})
}

// maxSuggested bounds the problems after which an unknown key gets no
// suggestion nor list of allowed keys, only its name and line: each costs
// about 0.2 ms (the nearest spelling, the sections it belongs to) and
// 300 bytes of message, and a file of 100,000 unknown keys took 19 s and
// 30 MB to refuse; past the first few dozen, a reader wants the lines,
// not more advice.
const maxSuggested = 50

// checkSection checks a mapping decoded into struct t: every key must be
// one of its fields (an unknown one is reported with what is allowed, the
// nearest spelling or the section it belongs to), every value its field's.
func checkSection(n *yaml.Node, t reflect.Type, path string, lines keyLines, errs *[]error) {
	fields := yamlFields(t)
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			continue // merge key: its map is checked where it is defined
		}
		if writtenAgain(k, path, first, errs) {
			continue
		}
		sub := joinKey(path, k.Value)
		f, ok := fields[k.Value]
		if !ok && len(*errs) >= maxSuggested {
			report(errs, &FieldError{Key: sub, Line: k.Line, Problem: "unknown key"})
			continue
		}
		if !ok {
			allowed := sortedKeys(fields)
			problem := "unknown key; "
			if near := nearestKey(k.Value, allowed); near != "" {
				problem += "did you mean " + near + "? "
			} else if where := keyElsewhere(reflect.TypeFor[Config](), k.Value); len(where) > 0 && where[0] == k.Value {
				// A top-level key written inside a section: "it belongs
				// under admission" for admission itself read as nonsense.
				problem += "it is a top-level key (write it unindented, outside " + path + "); "
			} else if len(where) > 0 {
				problem += "it belongs under " + strings.Join(where, " or ") + "; "
			}
			report(errs, &FieldError{Key: sub, Line: k.Line,
				Problem: problem + "allowed here: " + strings.Join(allowed, ", ")})
			continue
		}
		lines[sub] = k.Line
		checkSchema(v, f, sub, lines, errs)
	}
}

// writtenAgain reports (and records in errs) a key already written in its
// mapping; first maps the mapping's keys to their lines. It is found here,
// once per repeat, because the YAML library reports every pair of equal
// keys: n repeats of a key made n*(n-1)/2 errors, and a 13 KB file of
// 1000 "listen:" lines took 24 s and a 29 MB message to refuse.
func writtenAgain(k *yaml.Node, path string, first map[string]int, errs *[]error) bool {
	if k.Kind != yaml.ScalarNode {
		return false // a complex key is the library's to refuse
	}
	if line, seen := first[k.Value]; seen {
		report(errs, &FieldError{Key: entryKey(path, k.Value), Line: k.Line,
			Problem: fmt.Sprintf("already written at line %d (a key appears once in its section)", line)})
		return true
	}
	first[k.Value] = k.Line
	return false
}

// scalarProblem is what is wrong with a single value of kind t.Kind(), or
// "" when the decoder will take it.
func scalarProblem(n *yaml.Node, t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return "want true or false, got " + valueName(n)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && wholeDigits(n.Value) {
			// Past int64, YAML reads digits as a float: "want a whole
			// number" for 99999999999999999999 named the wrong problem.
			return fmt.Sprintf("number %s is out of range (at most %d)", n.Value, int64(1)<<(t.Bits()-1)-1)
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return "want a whole number, got " + valueName(n)
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits()); err != nil {
			return fmt.Sprintf("number %s is out of range (at most %d)", n.Value, int64(1)<<(t.Bits()-1)-1)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return "want a whole number, got " + valueName(n)
		}
		if _, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits()); err != nil {
			return "want a whole number of 0 or more that fits, got " + n.Value
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			return "want a number, got " + valueName(n)
		}
		// .nan passed every range check (each comparison with NaN is
		// false: retry.budget_ratio, breaker.failure_ratio, ...), .inf
		// several.
		var f float64
		if err := n.Load(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return "want a finite number, got " + valueName(n)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return "want a string, got " + kindName(n)
		}
	}
	return ""
}

// wholeDigits reports whether s is written as a whole number: digits,
// with a sign and _ separators.
func wholeDigits(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return s != "" && strings.Trim(s, "0123456789_") == ""
}

// yamlFields maps a struct's YAML key names to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			maps.Copy(out, yamlFields(f.Type)) // an embedded section's keys are this section's
			continue
		}
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// keyMaps are the maps whose names are API keys (rate_limits.keys): an
// entry is named by KeyRef, as their validation names it, not by the key.
var keyMaps = map[string]bool{"rate_limits.keys": true}

// entryKey is the path of the entry key of the map at path.
func entryKey(path, key string) string {
	if keyMaps[path] {
		return path + "[" + KeyRef(key) + "]"
	}
	return joinKey(path, key)
}

// holdsKeys reports a path whose scalar values are API keys, or where one
// is likely written by mistake (auth.keys: sk-abc, a key where a section
// belongs).
func holdsKeys(path string) bool {
	rest, ok := strings.CutPrefix(path, "auth.keys")
	if !ok {
		rest, ok = strings.CutPrefix(path, "rate_limits.keys")
	}
	if !ok {
		i := strings.Index(path, "].keys")
		if !strings.HasPrefix(path, "cache.rules[") || i < 0 {
			return false
		}
		rest = path[i+len("].keys"):]
	}
	// The list itself or one of its entries, not a field of an entry
	// (auth.keys[0].weight: 2x is no key).
	return rest == "" || strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && !strings.Contains(rest, ".")
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	default:
		return valueName(n)
	}
}

// valueName quotes a scalar refused where another type belongs, with a
// URL's password hidden before it is cut: a Redis or NATS URL written
// where a list of host:port belongs (addrs: redis://:pw@host) is a likely
// mistake, and the refusal reaches the log and the admin /status.
func valueName(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return kindName(n)
	}
	v := telemetry.RedactURL(n.Value)
	if len(v) > 40 {
		return strconv.Quote(v[:40] + "...")
	}
	return strconv.Quote(v)
}

// KeyError is a problem with key found outside validation (a reload the
// running gateway refuses), told as validation's are: the file the config
// was read from and the line of key, or of its nearest parent present in
// the file (none when the config came from flags, or key's section is
// absent).
func (c *Config) KeyError(key, problem string) *FieldError {
	return &FieldError{File: c.file, Key: key, Line: c.lines.lineOf(key), Problem: problem}
}

// singleValueName is what a scalar config type takes, for a refusal of a
// list or section written in its place.
func singleValueName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a single duration such as 500ms or 5s"
	case reflect.TypeFor[ByteSize]():
		return "a single size such as 8MiB or 1048576"
	}
	return "a single value"
}

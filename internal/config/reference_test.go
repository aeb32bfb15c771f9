package config

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/routing"
)

// update rewrites docs/CONFIG.md: go test ./internal/config -run TestConfigReferenceIsCurrent -update
var update = flag.Bool("update", false, "rewrite docs/CONFIG.md from the config schema")

// referenceMinimal is the smallest file validation accepts: what it fills
// in on top of Default() (per backend too) is the default printed.
const referenceMinimal = "models:\n  - name: m\n    backends:\n      - url: http://127.0.0.1:9001\n"

// referenceMeanings are the meanings of keys the example writes only
// inside a flow mapping (whose comment is the line's, not the key's) or
// not at each place it can be written, each as the code reads it.
var referenceMeanings = map[string]string{
	"cache.redis.key_prefix":                   "starts every cache key",
	"auth.jwt.claims.max_priority":             "claim naming the highest class the token may ask for: interactive or batch, as auth.keys[].max_priority",
	"cache.rules[].models":                     "model name globs (path.Match) the rule applies to; empty matches every model",
	"health.active.path":                       "path probed on vllm, sglang, llamacpp and tgi backends (and on ones with no engine and no api_key); ollama and hosted are not probed",
	"health.active.timeout":                    "one probe; at most health.active.interval. A probe that ends over 250 ms past it (the gateway itself stalled: starved of CPU, stopped, a paused VM) counts neither way, at most 3 in a row per backend (a 4th counts)",
	"models[].backends[].tls.key_file":         "private key of tls.cert_file (mTLS client certificate); both or neither",
	"models[].discovery[].tls.key_file":        "private key of tls.cert_file (mTLS client certificate); both or neither",
	"models[].discovery[].type":                "where the backends come from: file (path, watched), dns (name, A/AAAA or SRV), consul or kubernetes (EndpointSlices)",
	"models[].discovery[].path":                "type file: the JSON or YAML list of target groups, watched",
	"models[].discovery[].min_interval":        "type dns: the shortest time between resolutions (the answer's TTL is kept within min and max)",
	"models[].discovery[].max_interval":        "type dns: the longest time between resolutions",
	"models[].discovery[].weight":              "every found target's weight, as a backend's (for weighted)",
	"models[].discovery[].max_concurrency":     "every found target's cap on outstanding requests, as a backend's; 0 = none",
	"models[].discovery[].api_key":             "sent upstream as Bearer to every found target, as a backend's api_key",
	"models[].discovery[].upstream_model":      "rewrite \"model\" for every found target, as a backend's",
	"rate_limits.redis.addrs":                  "[host:port] single node, several = Cluster seeds; required with store: redis",
	"rate_limits.redis.failure_mode":           "while Redis is down: open = each replica limits alone at 1/replicas of each limit; closed = refuse with 503",
	"rate_limits.redis.replicas":               "gateway replicas sharing the limits: failure_mode open enforces 1/replicas of each limit per replica",
	"rate_limits.redis.timeout":                "bounds one Redis call; past it the call fails and failure_mode applies",
	"rate_limits.redis.connect_timeout":        "bounds dialling Redis",
	"rate_limits.redis.username":               "Redis ACL user (AUTH)",
	"rate_limits.redis.password":               "Redis password (AUTH), e.g. ${REDIS_PASSWORD}",
	"rate_limits.redis.db":                     "database number, single node only",
	"rate_limits.redis.key_prefix":             "starts every rate-limit key",
	"rate_limits.global.requests":              "nginx limit_req syntax (\"rate=10r/s burst=20\", nodelay, delay=N, \"off\") across all requests; beyond the burst: 429",
	"rate_limits.global.tokens_per_minute":     "estimated tokens reserved at admission, settled with the reported usage, across all requests",
	"rate_limits.per_key.requests":             "nginx limit_req syntax, per API key; beyond the burst: 429",
	"rate_limits.per_key.tokens_per_minute":    "tokens per minute per API key (reserved at admission, settled with usage)",
	"rate_limits.per_tenant.requests":          "nginx limit_req syntax, per tenant; beyond the burst: 429",
	"rate_limits.per_tenant.tokens_per_minute": "tokens per minute per tenant (reserved at admission, settled with usage)",
	"rate_limits.per_ip.requests":              "nginx limit_req syntax, per client address; beyond the burst: 429",
	"rate_limits.per_ip.tokens_per_minute":     "tokens per minute per client address (reserved at admission, settled with usage)",
	"rate_limits.keys[].requests":              "this key's requests limit; unset inherits per_key, \"off\" lifts it",
	"rate_limits.keys[].tokens_per_minute":     "this key's token limit; unset inherits per_key",
	"rate_limits.tenants[].requests":           "this tenant's requests limit; unset inherits per_tenant, \"off\" lifts it",
	"rate_limits.tenants[].tokens_per_minute":  "this tenant's token limit; unset inherits per_tenant",
}

// referenceAllowed are the allowed values of keys whose validation message
// is built from constants (the generator reads only literal messages).
var referenceAllowed = map[string]string{
	"upstream_client":                `"` + UpstreamLean + `" or "` + UpstreamNetHTTP + `"`,
	"rate_limits.store":              "local or redis",
	"rate_limits.redis.failure_mode": FailOpen + " or " + FailClosed,
	"models[].discovery[].type":      "file, dns, consul or kubernetes",
	"models[].backends[].engine":     strings.Join(Engines, ", ") + " (or unset)",
	"models[].discovery[].engine":    strings.Join(Engines, ", ") + " (or unset)",
	"models[].backends[].weight":     "must be >= 0",
	"models[].discovery[].weight":    "must be >= 0",
	"models[].policy":                strings.Join(routing.PolicyNames(), ", "),
	"rate_limits.max_keys":           "must be >= 0 (0 or unset: " + strconv.Itoa(DefaultRateLimitMaxKeys) + ")",
	"rate_limits.redis.replicas":     "must be >= 1 (0 or unset: " + strconv.Itoa(DefaultRateLimitRedisReplicas) + ")",
}

// docs/CONFIG.md is generated from the schema (yaml tags), the defaults
// (Default() plus what validation fills in), validation's literal
// messages and the comments of examples/sluice.yaml; a key added or
// changed without regenerating fails here.
func TestConfigReferenceIsCurrent(t *testing.T) {
	got, err := buildReference()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "CONFIG.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("docs/CONFIG.md is stale; regenerate: go test ./internal/config -run TestConfigReferenceIsCurrent -update\nfirst difference at line %d", firstDiffLine(string(want), got))
	}
}

// The hand-kept tables name key paths that exist.
func TestReferenceTablesNameKeys(t *testing.T) {
	var rows []refRow
	collectRows(reflect.TypeFor[Config](), reflect.Value{}, "", &rows)
	for _, m := range []map[string]string{referenceFillIns, referenceUnset, referenceAllowed, referenceMeanings} {
		for p := range m {
			if !slices.ContainsFunc(rows, func(r refRow) bool { return r.path == p }) {
				t.Errorf("%s: no such key path", p)
			}
		}
	}
}

func firstDiffLine(a, b string) int {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}

type refRow struct {
	path, typ, def, allowed, meaning string
	goDoc                            string // the field's (else its type's) Go comment
}

func buildReference() (string, error) {
	cfg, err := Parse([]byte(referenceMinimal))
	if err != nil {
		return "", fmt.Errorf("minimal config: %w", err)
	}
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml"))
	if err != nil {
		return "", err
	}
	allowed, err := validationMessages()
	if err != nil {
		return "", err
	}
	for p, a := range referenceAllowed {
		allowed[p] = a
	}
	docs, err := goDocs()
	if err != nil {
		return "", err
	}
	lines := strings.Split(string(example), "\n")
	var rows []refRow
	collectRows(reflect.TypeFor[Config](), reflect.ValueOf(*cfg), "", &rows)
	var b strings.Builder
	b.WriteString(referenceHeader)
	section := ""
	for _, r := range rows {
		top, _, _ := strings.Cut(strings.TrimSuffix(r.path, "[]"), ".")
		top = strings.TrimSuffix(top, "[]")
		if top != section {
			section = top
			fmt.Fprintf(&b, "\n## %s\n\n", top)
			b.WriteString("| Key | Type | Default | Allowed | Meaning |\n|---|---|---|---|---|\n")
		}
		r.def = referenceDefault(r)
		r.allowed = allowed[r.path]
		meaning, grouped := exampleMeaning(lines, r.path)
		if doc := firstSentence(docs.text(r.goDoc)); doc != "" &&
			(meaning == "" || meaning == "example" || grouped) { // "example" marks the value, it says nothing
			meaning = doc
		}
		if m, ok := referenceMeanings[r.path]; ok {
			meaning = m
		}
		r.meaning = meaning
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.path, r.typ, cell(r.def), cell(r.allowed), cell(r.meaning))
	}
	return b.String(), nil
}

const referenceHeader = `# Configuration reference

Generated from the code by ` + "`go test ./internal/config -run TestConfigReferenceIsCurrent -update`" + `;
do not edit by hand (the test fails when this file and the code differ).
One table per top-level section, one row per key path. **Type** is what
the file takes: a *duration* is written ` + "`500ms`, `5s`, `2m`" + ` (never negative);
a *size* is ` + "`8MiB`, `512KiB`, `1GB`" + ` or a number of bytes. **Default** is the
value with the key unset: ` + "`Default()`" + ` plus what validation fills in (for a
key inside a list or map, as for one item with only its required keys
set). A default applied where the value is read (a package's
constructor, internal/app) is printed as the value in force, from the
constant that code uses; "unset (...)" is a key the code leaves empty
(zero), with what that means: off, none, or what takes its place. **Allowed** is validation's own wording where it states one.
**Meaning** is the first sentence of the comment on the key in
[examples/sluice.yaml](../examples/sluice.yaml), the annotated file, which
says more.
`

// collectRows walks the schema as keyPaths does (sorted by key), with the
// parsed minimal config's value alongside where it has one.
func collectRows(t reflect.Type, v reflect.Value, path string, rows *[]refRow) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if v.IsValid() {
			v = v.Elem() // a nil pointer gives an invalid value: no default
		}
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	fields := yamlFields(t)
	for _, name := range sortedKeys(fields) {
		ft := fields[name]
		p := joinKey(path, name)
		var fv reflect.Value
		if v.IsValid() {
			fv = fieldByYAML(v, name)
		}
		def := "—" // inside a list or map item the code writes nothing into
		if v.IsValid() {
			def = defaultWords(fv)
		}
		*rows = append(*rows, refRow{path: p, typ: typeWords(ft), def: def,
			goDoc: t.Name() + "." + name + "|" + elemName(ft)})
		et, ev := ft, fv
		for et.Kind() == reflect.Pointer {
			et = et.Elem()
			if ev.IsValid() {
				ev = ev.Elem()
			}
		}
		switch et.Kind() {
		case reflect.Slice:
			var first reflect.Value
			if ev.IsValid() && ev.Len() > 0 {
				first = ev.Index(0)
			}
			collectRows(et.Elem(), first, p+"[]", rows)
		case reflect.Map:
			collectRows(et.Elem(), reflect.Value{}, p+"[]", rows)
		default:
			collectRows(et, ev, p, rows)
		}
	}
}

// fieldByYAML finds a struct value's field by its yaml name, inline
// sections included.
func fieldByYAML(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			if fv := fieldByYAML(v.Field(i), name); fv.IsValid() {
				return fv
			}
			continue
		}
		if n == "" {
			n = strings.ToLower(f.Name)
		}
		if n == name {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[ByteSize]()
)

// typeWords names a key's type as a user writes it.
func typeWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "duration"
	case t == sizeType:
		return "size"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "list of " + plural(typeWords(t.Elem()))
	case reflect.Map:
		return "map of " + typeWords(t.Key()) + " to " + typeWords(t.Elem())
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(textUnmarshaler) {
			return "string"
		}
		if t.Implements(scalarFormType) {
			return "string or section"
		}
		return "section"
	}
	return t.Kind().String()
}

func plural(s string) string {
	switch s {
	case "section":
		return "sections"
	case "string or section":
		return "strings or sections"
	case "boolean", "integer", "number", "string", "duration", "size":
		return s + "s"
	}
	return s
}

// defaultWords prints a value as the file would write it.
func defaultWords(v reflect.Value) string {
	if !v.IsValid() || v.IsZero() && v.Kind() == reflect.Pointer {
		return "unset"
	}
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.IsZero() && v.Kind() != reflect.Bool && v.Kind() != reflect.Struct {
		return "unset"
	}
	switch v.Type() {
	case durationType:
		return durationWords(time.Duration(v.Int()))
	case sizeType:
		return sizeWords(v.Int())
	}
	switch v.Kind() {
	case reflect.Struct:
		if reflect.PointerTo(v.Type()).Implements(textUnmarshaler) {
			if s, ok := v.Interface().(fmt.Stringer); ok {
				return s.String()
			}
		}
		return ""
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.String:
		if v.String() == "" {
			return "none"
		}
		return "`" + v.String() + "`"
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return "none"
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
			return "`" + strings.Join(v.Interface().([]string), ", ") + "`"
		}
		return fmt.Sprintf("%d entries", v.Len())
	}
	return fmt.Sprint(v.Interface())
}

// durationWords writes 10m rather than Go's 10m0s.
func durationWords(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func sizeWords(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return fmt.Sprintf("%d %s", n/u.m, u.s)
		}
	}
	return strconv.FormatInt(n, 10)
}

// validationMessages reads validation's literal messages, bad("path",
// "must ..."), from the package's sources: the wording a refused file gets
// is the allowed range printed. A message with a format verb before its
// ", got ..." part is left out (it names constants: referenceAllowed).
func validationMessages() (map[string]string, error) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`bad\("([a-z_.\[\]]+)",\s*"((?:must|cannot)[^"]*)"`)
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			msg, _, _ := strings.Cut(m[2], ", got")
			if strings.Contains(msg, "%") {
				continue
			}
			if prev, ok := out[m[1]]; ok && prev != msg {
				msg = prev + "; " + msg
			}
			out[m[1]] = msg
		}
	}
	return out, nil
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// goDocIndex holds the package's Go comments: "Type.key" (a field by its
// yaml name) and "Type" (a struct type's own).
type goDocIndex map[string]string

// text is the field's comment, else (for a section) its type's.
func (d goDocIndex) text(key string) string {
	field, elem, _ := strings.Cut(key, "|")
	if s := d[field]; s != "" {
		return s
	}
	return d[elem]
}

// elemName is the struct type a section key holds, "" for a value.
func elemName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return ""
	}
	return t.Name()
}

// goDocs reads the comments of the package's config structs, the
// meaning of a key examples/sluice.yaml writes without one.
func goDocs() (goDocIndex, error) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		return nil, err
	}
	out := goDocIndex{}
	var inlined [][2]string // {outer type, inlined type}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				doc := ts.Doc
				if doc == nil {
					doc = gd.Doc
				}
				out[ts.Name.Name] = doc.Text()
				for _, fl := range st.Fields.List {
					if id, ok := fl.Type.(*ast.Ident); ok && len(fl.Names) == 0 && fl.Tag != nil && strings.Contains(fl.Tag.Value, ",inline") {
						// An inline section's keys are this struct's: so are their comments.
						inlined = append(inlined, [2]string{ts.Name.Name, id.Name})
					}
					if fl.Tag == nil || len(fl.Names) == 0 {
						continue
					}
					tag, _ := strconv.Unquote(fl.Tag.Value)
					name, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
					text := fl.Doc.Text()
					if text == "" {
						text = fl.Comment.Text()
					}
					out[ts.Name.Name+"."+name] = text
				}
			}
		}
	}
	for _, in := range inlined {
		for k, text := range out {
			if field, ok := strings.CutPrefix(k, in[1]+"."); ok {
				if _, own := out[in[0]+"."+field]; !own {
					out[in[0]+"."+field] = text
				}
			}
		}
	}
	return out, nil
}

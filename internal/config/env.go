package config

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// The file's environment references, $NAME and ${NAME} ($$ is a literal
// $), are replaced in its values and keys after the file is parsed, so
// that a variable's value is a value, never YAML: one holding a newline,
// a quote or "key: value" cannot add keys or break the file, and every
// line number stays the file's. They used to be replaced in the text
// before parsing.
//
// A variable that is not set is refused, naming it, its key and its line:
// it used to read as "", so a forgotten ${SLUICE_ADMIN_TOKEN} left the
// admin listener open without a token, and "pa$word" silently became
// "pa". A value written plain (unquoted) whose whole text becomes a
// number or a boolean is read as one (weight: ${W}); quoted, it is a
// string. Comments are not expanded. ${NAME:-default} is default when
// NAME is unset or empty, as in the shell: the way to say a variable may
// be missing (a Kubernetes Secret key marked optional sets none).

// envMark starts the stand-in for one ${NAME} in the text the parser
// reads: "${X}" is not plain YAML in a flow mapping ({token: ${X}}: the
// braces are the mapping's), where it worked when the text was expanded,
// so it is parsed as a name of letters and digits, and replaced after.
const envMark = "__sluice_env_"

// envRef is one ${NAME} or ${NAME:-default} of the file.
type envRef struct {
	name, def string
	hasDef    bool
}

// value is the reference's value, and whether it has one.
func (r envRef) value() (string, bool) {
	v, ok := os.LookupEnv(r.name)
	if r.hasDef && v == "" {
		return r.def, true
	}
	return v, ok
}

// markEnv replaces every ${NAME} and ${NAME:-default} in data (NAME of
// letters, digits and _, the default without '}' or a line break; not
// after an unpaired $) with envMark+index+"__", and returns them by
// index. Nothing else of the text changes, newlines least of all.
func markEnv(data []byte) ([]byte, []envRef) {
	var out strings.Builder
	var names []envRef
	last := 0 // data[last:] is not yet copied to out
	for i := 0; i+1 < len(data); i++ {
		if data[i] != '$' {
			continue
		}
		if data[i+1] == '$' {
			i++ // $$: a literal $, left for expandValue
			continue
		}
		if data[i+1] != '{' {
			continue
		}
		end := i + 2
		for end < len(data) && isNameByte(data[end]) {
			end++
		}
		if end == i+2 || end >= len(data) {
			continue
		}
		ref := envRef{name: string(data[i+2 : end])}
		if end+1 < len(data) && data[end] == ':' && data[end+1] == '-' {
			stop := end + 2
			for stop < len(data) && data[stop] != '}' && data[stop] != '\n' && data[stop] != '\r' {
				stop++
			}
			if stop >= len(data) || data[stop] != '}' {
				continue
			}
			ref.def, ref.hasDef = string(data[end+2:stop]), true
			end = stop
		}
		if data[end] != '}' {
			continue
		}
		if names == nil {
			out.Grow(len(data))
		}
		out.Write(data[last:i])
		out.WriteString(envMark + strconv.Itoa(len(names)) + "__")
		names = append(names, ref)
		last = end + 1
		i = end
	}
	if names == nil {
		return data, nil
	}
	out.Write(data[last:])
	return []byte(out.String()), names
}

func isNameByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// expandEnv replaces the environment references in every key and value
// under n (names: markEnv's), recording each one not set in errs.
func expandEnv(n *yaml.Node, path string, names []envRef, errs *[]error) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			expandEnv(c, path, names, errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			expandValue(k, joinKey(path, k.Value), names, errs)
			expandEnv(n.Content[i+1], joinKey(path, k.Value), names, errs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandEnv(c, fmt.Sprintf("%s[%d]", path, i), names, errs)
		}
	case yaml.ScalarNode:
		expandValue(n, path, names, errs)
	}
}

// expandValue replaces the references in one scalar: $NAME and $$ as
// os.Expand reads them, then markEnv's stand-ins. A value taken from the
// environment is not expanded again.
func expandValue(n *yaml.Node, path string, names []envRef, errs *[]error) {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") && !strings.Contains(n.Value, envMark) {
		return
	}
	var unset []string
	lookup := func(r envRef) string {
		v, ok := r.value()
		if !ok && !slices.Contains(unset, r.name) {
			unset = append(unset, r.name)
		}
		return v
	}
	value := os.Expand(n.Value, func(k string) string {
		if k == "$" {
			return "$"
		}
		return lookup(envRef{name: k})
	})
	if strings.Contains(value, envMark) {
		var b strings.Builder
		rest := value
		for {
			i := strings.Index(rest, envMark)
			if i < 0 {
				break
			}
			num := rest[i+len(envMark):]
			j := strings.Index(num, "__")
			idx, err := strconv.Atoi(num[:max(j, 0)])
			if j < 0 || err != nil || idx < 0 || idx >= len(names) {
				b.WriteString(rest[:i+len(envMark)])
				rest = rest[i+len(envMark):]
				continue
			}
			b.WriteString(rest[:i])
			b.WriteString(lookup(names[idx]))
			rest = num[j+2:]
		}
		b.WriteString(rest)
		value = b.String()
	}
	if len(unset) > 0 {
		report(errs, &FieldError{Key: path, Line: n.Line, Problem: fmt.Sprintf(
			"environment variable %s is not set (${%s:-} reads it as empty; $$ is a literal $)", strings.Join(unset, ", "), unset[0])})
		return
	}
	if value == n.Value {
		return
	}
	n.Value = value
	if n.Style == 0 && n.ShortTag() == "!!str" {
		n.Tag = plainTag(value)
	}
}

// plainTag is the tag YAML gives value written plain on its own: !!int,
// !!bool, !!float, !!null, or !!str for anything that is not one such
// scalar (text that would parse as a list or keys stays a string).
func plainTag(value string) string {
	var doc yaml.Node
	if strings.ContainsAny(value, "\n#") || yaml.Load([]byte(value), &doc) != nil ||
		len(doc.Content) != 1 || doc.Content[0].Kind != yaml.ScalarNode ||
		doc.Content[0].Style != 0 || doc.Content[0].Value != value {
		return "!!str"
	}
	return doc.Content[0].ShortTag()
}

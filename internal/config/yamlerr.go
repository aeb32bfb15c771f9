package config

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v4"
)

// yamlProblems restates the YAML library's errors (a syntax error, a key
// written twice) as FieldErrors: the line and the problem in the terms of
// the file, as every other config error reads. The library's own text
// names its stages and Go types ("go-yaml load error in scanner (while
// scanning for the next token) at L3.C1: ...", "yaml: construct errors:
// line 6: ..."), which tell an operator nothing. data is the text the
// library read, to recognise an indent written with a tab.
func yamlProblems(err error, data []byte) error {
	var list *yaml.LoadErrors
	if errors.As(err, &list) {
		errs := make([]error, 0, len(list.Errors))
		for _, e := range list.Errors {
			errs = append(errs, yamlProblem(e, data))
		}
		return errors.Join(errs...)
	}
	var one *yaml.LoadError
	if errors.As(err, &one) {
		return yamlProblem(one, data)
	}
	return &FieldError{Problem: "not a YAML document: " + err.Error()}
}

// notUTF8 is the first byte of data that is not UTF-8, as a problem at
// its line, or nil. The library's own refusal named neither line nor
// column ("invalid leading UTF-8 octet (value: 255)"). A file that starts
// with a UTF-16 byte order mark is the library's to read.
func notUTF8(data []byte) error {
	if bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) || utf8.Valid(data) {
		return nil
	}
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return &FieldError{Line: line, Problem: fmt.Sprintf(
				"not UTF-8 text: byte 0x%02x at column %d (save the file as UTF-8)", data[i], col)}
		}
		if r == '\n' {
			line, col = line+1, 0
		}
		col++
		i += size
	}
	return nil
}

// noDocument reports the library's refusal of a text with no document
// (empty, or only comments): to the config it is a file with no keys.
func noDocument(err error) bool {
	var list *yaml.LoadErrors
	if !errors.As(err, &list) || len(list.Errors) != 1 {
		return false
	}
	return strings.HasSuffix(list.Errors[0].Message, "no documents in stream")
}

func yamlProblem(e *yaml.LoadError, data []byte) *FieldError {
	if strings.Contains(e.Message, "expected single document") {
		// The library's words, with no line: "yaml: expected single
		// document, found multiple".
		return &FieldError{Line: secondDocument(data),
			Problem: "a second YAML document starts here (---): a config file is one document"}
	}
	problem := e.Message
	if e.Mark.Line > 0 && e.Mark.Column > 0 && tabAt(data, e.Mark.Line, e.Mark.Column) {
		problem = "a tab where YAML wants spaces (indent with spaces, never tabs)"
	} else if e.Stage != "constructor" {
		problem = "YAML syntax: " + problem
		if e.Mark.Column > 0 {
			problem += " (column " + strconv.Itoa(e.Mark.Column) + ")"
		}
	}
	return &FieldError{Line: e.Mark.Line, Problem: problem}
}

// secondDocument is the line of the "---" that starts the file's second
// document: the first one after a line of content (0 if none is found).
func secondDocument(data []byte) int {
	content := false
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimRight(line, " \t\r")
		switch {
		case t == "---" || strings.HasPrefix(t, "--- "):
			if content {
				return i + 1
			}
			content = true // "--- value" or a start marker: what follows is the first document
		case t == "..." || t == "" || strings.HasPrefix(strings.TrimSpace(t), "#") || strings.HasPrefix(t, "%"):
		default:
			content = true
		}
	}
	return 0
}

// tabAt reports whether the byte at line:column (both from 1) is a tab.
func tabAt(data []byte, line, column int) bool {
	rest := string(data)
	for range line - 1 {
		_, after, ok := strings.Cut(rest, "\n")
		if !ok {
			return false
		}
		rest = after
	}
	return column-1 < len(rest) && rest[column-1] == '\t'
}

// alsoInvalid is what validation finds wrong in a file whose keys or
// kinds checkSchema already refused (schemaErrs), so that one run of
// `sluice check` lists every problem, not the unknown key first and a bad
// URL on the next run: the file is decoded leniently (an unknown key
// skipped, a value of the wrong kind left at its default) and validated,
// and a problem at or under a key schemaErrs name is left out (the
// default left there is not the operator's).
func alsoInvalid(root *yaml.Node, lines keyLines, schemaErrs []error, policyOK PolicyCheck) []error {
	cfg := Default()
	// Its errors are schemaErrs, said better (a repeated key too: the
	// library's check of them compares every pair of keys).
	_ = root.Load(&cfg, yaml.WithUniqueKeys(false))
	cfg.fitAudioBound(lines)
	// As Load does: an issuer entry's unset keys are auth.jwt's, not zero
	// (each entry's jwks_refresh, claims.tenant, ... were refused too).
	cfg.Auth.JWT.inheritJWT(func(key string) bool { _, ok := lines[key]; return ok })
	err := cfg.ValidateWith(policyOK)
	if err == nil {
		return nil
	}
	refused := refusedKeys(schemaErrs)
	parents := parentKeys(refused)
	var out []error
	for _, e := range flatten(lines.annotate(err)) {
		var fe *FieldError
		if errors.As(e, &fe) && (covered(fe.Key, refused) || parents[fe.Key]) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// refusedKeys is the set of key paths errs name ("" for the file as a
// whole).
func refusedKeys(errs []error) map[string]bool {
	keys := make(map[string]bool, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) && fe.more == 0 { // a count of problems left out names no key
			keys[fe.Key] = true
		}
	}
	return keys
}

// parentKeys is the set of the sections that hold a refused key
// ("models" for "models[0].name"): a problem there is what the default
// left in place of the refused value makes of its section (models: [[a]]
// also read "models: at least one model is required").
func parentKeys(refused map[string]bool) map[string]bool {
	out := map[string]bool{}
	for key := range refused {
		for i := len(key) - 1; i > 0; i-- {
			if key[i] == '.' || key[i] == '[' {
				out[key[:i]] = true
			}
		}
	}
	return out
}

// covered reports whether key is, or is under, a key in refused: the key
// itself or any prefix of it that ends before a '.' or '['. It looks up
// the key's few prefixes rather than comparing it with every refused key,
// which made a file with n bad models and n unknown keys take n*n steps
// (4000 of each, 211 KB: 11 s).
func covered(key string, refused map[string]bool) bool {
	if refused[""] || refused[key] {
		return true
	}
	for i := len(key) - 1; i > 0; i-- {
		if (key[i] == '.' || key[i] == '[') && refused[key[:i]] {
			return true
		}
	}
	return false
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

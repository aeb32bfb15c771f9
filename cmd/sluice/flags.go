package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
)

// helpError is --help, asked for: run prints text on stdout and exits 0
// (help a user asked for is the output, as kubectl and git print it; a
// usage mistake goes to stderr).
type helpError struct{ text string }

func (h *helpError) Error() string { return "help requested" }

// usageError is a command line the command cannot take (an unknown flag,
// a bad value, a missing required flag, a stray argument): run prints it
// with a pointer to --help and exits 2, as Go's flag package and most
// Unix tools do, so that a script can tell it from a runtime failure (1).
type usageError struct {
	err error
	cmd string // the command whose --help to point at, when not run's own: "bench forecast"
}

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// usagef is a usageError with a formatted message (%w keeps a cause).
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// inMode points err's usage hint, if it is a usageError, at a mode of a
// command (sluice bench forecast --help rather than sluice bench --help).
func inMode(mode string, err error) error {
	var bad *usageError
	if errors.As(err, &bad) && bad.cmd == "" {
		bad.cmd = mode
	}
	return err
}

// cmdFlags is a subcommand's flag set and the synopsis its help prints.
type cmdFlags struct {
	*flag.FlagSet
	synopsis string
}

// newFlagSet builds a flag set that prints nothing itself: parseFlags
// turns --help into a helpError carrying the usage text, and a parse error
// into a one-line usageError. (Go's default prints the whole flag list on
// stderr for any typo, with the error above and again below it, and the
// command exited 1.)
func newFlagSet(name, synopsis string) *cmdFlags {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{fs, synopsis}
}

// helpText is the --help output: the synopsis, then every flag.
func (fs *cmdFlags) helpText() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Usage: %s %s\n", fs.Name(), fs.synopsis)
	if len(flagNames(fs.FlagSet)) > 0 {
		b.WriteString("\nFlags:\n")
		printFlags(&b, fs.FlagSet)
	}
	return b.String()
}

// printFlags lists the flags as the README writes them (--name; Go's flag
// package accepts one dash or two, but its own listing shows one), each with
// its default unless that is the zero value.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		usage = strings.ReplaceAll(usage, "\n", "\n    \t")
		line += "\n    \t" + usage
		switch d := f.DefValue; {
		case d == "" || d == "false" || d == "0" || d == "0s":
		case kind == "string":
			line += fmt.Sprintf(" (default %q)", d)
		default:
			line += " (default " + d + ")"
		}
		fmt.Fprintln(w, line)
	})
}

// parseFlags parses args: --help becomes a helpError, a parse error or a
// positional argument a usageError naming the flag (--name, as the help
// writes it) and, for a misspelt flag, the nearest one.
func parseFlags(fs *cmdFlags, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &helpError{fs.helpText()}
		}
		return &usageError{err: flagProblem(fs.FlagSet, err)}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// flagProblem rewrites the flag package's messages ("flag provided but
// not defined: -bogus", "invalid value "x" for flag -count: parse error")
// in the help's own spelling, with what the flag takes.
func flagProblem(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		if near := nearest(name, flagNames(fs)); near != "" {
			return fmt.Errorf("unknown flag --%s (did you mean --%s?)", name, near)
		}
		return fmt.Errorf("unknown flag --%s", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value (%s)", name, takes(fs.Lookup(name)))
	}
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		// invalid value "x" for flag -count: parse error
		if val, tail, ok := strings.Cut(rest, " for flag -"); ok {
			name, why, _ := strings.Cut(tail, ": ")
			if f := fs.Lookup(name); f != nil {
				if why == "parse error" || strings.Contains(why, "invalid syntax") {
					why = "want " + takes(f)
				}
				return fmt.Errorf("--%s %s: %s", name, val, why)
			}
		}
	}
	// "bad flag syntax: ---x" and anything newer: as the package says it.
	return err
}

// takes says what f accepts, from its kind.
func takes(f *flag.Flag) string {
	if f == nil {
		return "a value"
	}
	kind, _ := flag.UnquoteUsage(f)
	switch kind {
	case "int", "uint":
		return "an integer"
	case "float":
		return "a number"
	case "duration":
		return "a duration such as 500ms, 30s or 2m"
	case "", "bool":
		return "true or false"
	case "string", "value":
		return "a " + kind
	}
	return kind // the usage text's own name for it: ADDR, FILE, URL
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// nearest is the candidate closest to s by edit distance (a swap of two
// adjacent letters counting once, as in the config's suggestions: "sevre"
// is "serve"), if a typo away (at most a third of its length, at least 1),
// or one s is a prefix of.
func nearest(s string, candidates []string) string {
	best, bestD := "", math.MaxInt
	for _, c := range candidates {
		d := config.EditDistance(s, c)
		if strings.HasPrefix(c, s) && len(s) >= 3 {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(1, len(s)/3) {
		return best
	}
	return ""
}

// stringList is a repeatable string flag (--backend a --backend b).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

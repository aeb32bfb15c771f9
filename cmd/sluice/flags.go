package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelp reports that --help was printed; the process exits 0.
var errHelp = errors.New("help requested")

// newFlagSet builds a flag set that prints its usage to stderr and returns
// errHelp for --help instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(stderr, "Usage: sluice "+name+" "+synopsis+"\n\nFlags:\n")
		printFlags(stderr, fs)
	}
	return fs
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

// parseFlags parses args, mapping flag.ErrHelp to errHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	return nil
}

// stringList is a repeatable string flag (--backend a --backend b).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// Command sluice is the Sluice LLM gateway. This file only dispatches
// subcommands; each subcommand lives in its own file and turns flags into a
// call into internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway (from --config FILE, or from flags; with neither, in front of the built-in simulator)", runServe},
		{"check", "validate a config file and build it aside, as nginx -t (exit 0: serve and a reload would take it)", runCheck},
		{"worker", "run jobs from the queue through a gateway (a separate worker process)", runWorker},
		{"sim", "run simulated OpenAI-compatible inference servers", runSim},
		{"bench", "replay load against an OpenAI-compatible URL ('bench forecast': score the traffic forecaster on a trace; 'bench autoscale': fixed vs HPA vs predictive scaling on a replayed trace)", runBench},
		{"demo", "replays a real trace (embedded) through round robin, Sluice, and Sluice + scale-out: prints a before/after table", runDemo},
		{"chaos", "attacks and faults against a gateway next to a well-behaved client: prints a table", runChaos},
		{"version", "print the version, commit and Go release of this binary (also --version)", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Sluice: an overload-proof gateway for OpenAI-compatible LLM servers.")
	fmt.Fprintln(w, "\nUsage: sluice <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nFlags of a command: sluice help <command> (or sluice <command> --help). sluice --version.")
	fmt.Fprintln(w, "Exit status: 0 done, 1 failed, 2 a command line it cannot take, 130/143 stopped by SIGINT/SIGTERM before the end.")
	fmt.Fprintln(w, "serve and worker exit 0 on SIGTERM/SIGINT, 1 when that stop was given up past its bound (not clean).")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command line, as main runs it, returning the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "help":
		return runHelp(args[1:], stdout, stderr)
	case "-v", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	c, ok := lookup(args[0])
	if !ok {
		return unknownCommand(args[0], stderr)
	}
	ctx, stop := notifyStop(context.Background())
	defer stop()
	return exitStatus(ctx, c.name, c.run(ctx, args[1:], stdout, stderr), stdout, stderr)
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// runHelp is `sluice help [command [subcommand]]`: the command's --help.
func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	c, ok := lookup(args[0])
	if !ok {
		return unknownCommand(args[0], stderr)
	}
	// Only the help is asked for: nothing runs, so no signal context.
	sub := append(append([]string{}, args[1:]...), "--help")
	return exitStatus(context.Background(), c.name, c.run(context.Background(), sub, stdout, stderr), stdout, stderr)
}

// unknownCommand says so on stderr, with the nearest command when the
// name looks like a typo of one, and returns the usage status, 2.
func unknownCommand(name string, stderr io.Writer) int {
	if strings.HasPrefix(name, "-") {
		fmt.Fprintf(stderr, "sluice: unknown flag %s (a command comes first: sluice <command> [flags])\n", name)
	} else {
		var names []string
		for _, c := range commands() {
			names = append(names, c.name)
		}
		if near := nearest(name, names); near != "" {
			fmt.Fprintf(stderr, "sluice: unknown command %q (did you mean %q?)\n", name, near)
		} else {
			fmt.Fprintf(stderr, "sluice: unknown command %q\n", name)
		}
	}
	fmt.Fprintln(stderr, "Run 'sluice help' for the commands.")
	return 2
}

// exitStatus reports a command's outcome and returns the exit status: 0
// (help included, on stdout), 2 for a usage error (one line and where the
// help is), 1 for a failure. A command cut short by SIGINT or SIGTERM says
// which signal stopped it, not Go's "context canceled", and exits 130 or
// 143 (stopSignal.status). The packages' own prefix, when it is the
// command's name ("bench: ..."), is not printed twice.
func exitStatus(ctx context.Context, name string, err error, stdout, stderr io.Writer) int {
	var help *helpError
	var bad *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		io.WriteString(stdout, help.text)
		return 0
	case errors.As(err, &bad):
		help := name
		if bad.cmd != "" {
			help = bad.cmd
		}
		fmt.Fprintf(stderr, "sluice %s: %v\nRun 'sluice %s --help' for its flags.\n", help, err, help)
		return 2
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		cause := context.Cause(ctx)
		msg := err.Error()
		if msg == context.Canceled.Error() {
			msg = "stopped before the end: " + cause.Error()
		} else {
			msg = strings.Replace(msg, context.Canceled.Error(), cause.Error(), 1)
		}
		fmt.Fprintf(stderr, "sluice %s: %s\n", name, strings.TrimPrefix(msg, name+": "))
		var sig stopSignal
		if errors.As(cause, &sig) {
			return sig.status()
		}
		return 1
	}
	fmt.Fprintf(stderr, "sluice %s: %s\n", name, strings.TrimPrefix(err.Error(), name+": "))
	return 1
}

// runVersion is `sluice version`: the build, on stdout.
func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version", "   (no flags; the same as sluice --version)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

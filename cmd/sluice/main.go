// Command sluice is the Sluice LLM gateway. This file only dispatches
// subcommands; each subcommand lives in its own file and turns flags into a
// call into internal/.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway (from --config FILE, or from flags)", runServe},
		{"check", "validate a config file and build it aside, as nginx -t (exit 0: serve and a reload would take it)", runCheck},
		{"worker", "run jobs from the queue through a gateway (a separate worker process)", runWorker},
		{"sim", "run simulated OpenAI-compatible inference servers", runSim},
		{"bench", "replay load against an OpenAI-compatible URL ('bench forecast': score the traffic forecaster on a trace; 'bench autoscale': fixed vs HPA vs predictive scaling on a replayed trace)", runBench},
		{"demo", "replays a real trace (embedded) through round robin, Sluice, and Sluice + scale-out: prints a before/after table", runDemo},
		{"chaos", "attacks and faults against a gateway next to a well-behaved client: prints a table", runChaos},
		{"version", "print the version, commit and Go release of this binary (also --version)", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, versionString())
			return nil
		}},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Sluice: an overload-proof gateway for OpenAI-compatible LLM servers.")
	fmt.Fprintln(w, "\nUsage: sluice <command> [flags]   (sluice <command> --help for its flags; sluice --version)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.short)
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "-v" {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == args[0] {
			if err := c.run(ctx, args[1:], stdout, stderr); err != nil {
				if err == errHelp {
					return 0
				}
				fmt.Fprintf(stderr, "sluice %s: %v\n", c.name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

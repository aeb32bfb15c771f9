package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// quickstartServers is how many simulated inference servers `sluice serve`
// starts when it is given no backends: two, so that balancing between
// them shows on the dashboard.
const quickstartServers = 2

// quickstart reports whether serve was given nothing to serve: no config
// file, no model, no backend, no policy. It then serves the built-in
// simulator, as nginx serves its welcome page, so the first command a
// new user types answers a curl. --listen, --admin-listen, --log-level and
// --data-dir still apply.
func (f serveFlags) quickstart() bool {
	return f.cfgPath == "" && f.model == "" && len(f.backends) == 0 && f.policy == ""
}

// startQuickstartBackends starts the simulated servers on free loopback
// ports and points f at them. The returned stop shuts them down; serve
// calls it after the gateway has stopped.
func (f *serveFlags) startQuickstartBackends(ctx context.Context, logger *slog.Logger) (stop func(), err error) {
	// Not stopped by ctx (the first signal): the gateway drains its
	// streams from them before stop is called.
	urls, stop, err := sim.ListenAndServeN(context.WithoutCancel(ctx), "127.0.0.1:0", quickstartServers, sim.Config{}, logger)
	if err != nil {
		return nil, fmt.Errorf("starting the built-in simulator (no --config, --model or --backend given): %w", err)
	}
	f.model = sim.DefaultModel
	f.backends = urls
	return stop, nil
}

// printQuickstart tells a person at a terminal what is running and what
// to type next (stdout: the JSON log stays on stderr).
func printQuickstart(w io.Writer, cfg *config.Config, public, admin net.Addr) {
	api := "http://" + dialable(public)
	fmt.Fprintf(w, "sluice: no --config, --model or --backend: serving the built-in simulator as model %q\n", sim.DefaultModel)
	fmt.Fprintf(w, "  (%d simulated inference servers on loopback; made-up answers, not a real model)\n", quickstartServers)
	fmt.Fprintf(w, "  listening on  %s (OpenAI API: %s/v1)\n", public, api)
	if admin != nil {
		fmt.Fprintf(w, "  admin         http://%s/ (live dashboard; /status, /metrics)\n", dialable(admin))
	} else {
		fmt.Fprintln(w, "  admin         off")
	}
	switch {
	case !cfg.Queue.Enabled:
		fmt.Fprintln(w, "  data dir      none (job queue off)")
	case cfg.Queue.URL != "":
		fmt.Fprintln(w, "  data dir      none (job queue on external NATS)")
	default:
		dir := cfg.Queue.DataDir
		if dir == "" {
			dir = config.DefaultDataDir()
		}
		fmt.Fprintf(w, "  data dir      %s (the embedded job queue; --data-dir to move it)\n", dir)
	}
	fmt.Fprintf(w, "  try           curl %s/v1/chat/completions -H 'Content-Type: application/json' \\\n", api)
	fmt.Fprintf(w, "                  -d '{\"model\":%q,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n", sim.DefaultModel)
	fmt.Fprintf(w, "                any OpenAI SDK: base URL %s/v1, any API key\n", api)
	fmt.Fprintln(w, "  real backends sluice serve --model NAME --backend URL [--backend URL ...], or --config FILE (examples/sluice.yaml)")
	fmt.Fprintln(w, "  Ctrl-C stops it.")
}

// dialable is addr as a client on this host reaches it: a listener on
// every interface (":8080", "[::]:8080") is reached on 127.0.0.1.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

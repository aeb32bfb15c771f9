// Command dominant dumps what the Python scripts beside it read: the
// shipped forecaster's per-window mean and p90 forecasts of a ServeGen
// folder's total at 10, 30 and 60 minutes, fed exactly as `sluice bench
// forecast` feeds it (forecast.EvaluateTenants: every client a tenant of
// one model, one window at a time, the forecasts asked after each), and
// every client's rate per window. The scripts score angles on the largest
// client's level steps on top of those forecasts with the command's gap
// mask and scoring; docs/BENCHMARKS.md §10 ("The dominant client's steps,
// four more angles") holds their output.
//
//	export FA_DATA=/tmp/forecastangles FA_SERVEGEN=$PWD/../shared/traces/servegen/language/m-mid
//	go run ./bench/forecastangles/dominant -servegen $FA_SERVEGEN -out $FA_DATA
//	cd bench/forecastangles/dominant && for s in h ad dstat b b2 c c2; do python3 $s.py; done
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/forecast"
)

func main() {
	dir := flag.String("servegen", "../shared/traces/servegen/language/m-mid", "ServeGen folder: one CSV per client")
	out := flag.String("out", "/tmp/forecastangles", "folder to write fc.csv and clients.csv to")
	flag.Parse()
	if err := dump(*dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "dominant:", err)
		os.Exit(1)
	}
}

// dump writes fc.csv (window, total, then mean and p90 at 10, 30, 60 min)
// and clients.csv (client, then its rate per window).
func dump(dir, out string) error {
	clients, names, window, err := bench.LoadServeGenClients(dir)
	if err != nil {
		return err
	}
	hs := []time.Duration{10 * time.Minute, 30 * time.Minute, 60 * time.Minute}
	cfg := forecast.Config{Interval: window}.WithDefaults()
	cfg.MaxHorizon = max(cfg.MaxHorizon, hs[len(hs)-1])
	fc, err := forecast.New(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	err = writeFile(filepath.Join(out, "fc.csv"), func(w *bufio.Writer) {
		key := forecast.Key{Model: "series"}
		for o := range clients[0] {
			at := time.Unix(0, 0).Add(time.Duration(o) * window)
			var sum float64
			for j, name := range names {
				fc.Observe(at, forecast.Key{Model: key.Model, Tenant: name}, clients[j][o]*window.Seconds(), 0)
				sum += clients[j][o]
			}
			fc.Advance(at.Add(window))
			fmt.Fprintf(w, "%d,%g", o, sum)
			for _, h := range hs {
				f, _ := fc.Forecast(key, h) // zero until the first forecast
				fmt.Fprintf(w, ",%g,%g", f.Requests.Mean, f.Requests.P90)
			}
			fmt.Fprintln(w)
		}
	})
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(out, "clients.csv"), func(w *bufio.Writer) {
		for j, name := range names {
			fmt.Fprint(w, name)
			for _, v := range clients[j] {
				fmt.Fprintf(w, ",%g", v)
			}
			fmt.Fprintln(w)
		}
	})
}

// writeFile creates name and writes it through fill.
func writeFile(name string, fill func(*bufio.Writer)) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fill(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

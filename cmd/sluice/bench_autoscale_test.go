package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `sluice bench autoscale` prints the sweep, one line per controller in the
// documented form and the verdict, and writes a well-formed SVG.
func TestBenchAutoscale(t *testing.T) {
	lengths := filepath.Join(t.TempDir(), "azure.csv")
	if err := os.WriteFile(lengths, []byte("TIMESTAMP,ContextTokens,GeneratedTokens\n"+
		"2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:51.1,1200,20\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svg := filepath.Join(t.TempDir(), "plot.svg")
	var out, errOut bytes.Buffer
	err := runBench(context.Background(), []string{"autoscale", "-servegen", writeServeGen(t, 3), "-lengths", lengths,
		"-start-day", "3", "-days", "1", "-peak-servers", "3", "-compress", "240", "-targets", "0.6,0.8", "-svg", svg}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v (stderr %s)", err, errOut.String())
	}
	text := out.String()
	for _, re := range []string{
		`(?m)^autoscale days=3-3 \(warmed on days 1-2\) compress=240 `,
		`(?m)^hpa_sweep target=0\.60 within_slo=\d+\.\d\d% refused=\d+\.\d\d% p99_ttft=\d+\.\d\ds server_minutes=\d+ violation_minutes=\d+ peak_ready=`,
		`(?m)^hpa_sweep target=0\.80 `,
		`(?m)^autoscale controller=fixed within_slo=`,
		`(?m)^autoscale controller=reactive\(hpa_target=0\.[68]0\) within_slo=`,
		`(?m)^autoscale controller=predictive within_slo=`,
		`(?m)^autoscale controller=signal-only\(no_forecast\) within_slo=`,
		`(?m)^autoscale predictive_vs_reactive violation_minutes=[-+]\d+% server_minutes=\d+% target=\(<=-50% at <=110%\) met=(true|false)$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("stdout lacks %s:\n%s", re, text)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, new(struct{})); err != nil || !strings.Contains(string(b), "<polyline") {
		t.Fatalf("plot is not SVG with lines: %v", err)
	}

	errOut.Reset()
	if err := runBench(context.Background(), []string{"autoscale", "-servegen", writeServeGen(t, 3), "-lengths", lengths, "-start-day", "1"}, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "-start-day") {
		t.Fatalf("start-day 1 (no history for the forecaster): %v", err)
	}
	if err := runBench(context.Background(), []string{"autoscale", "-servegen", "x", "-lengths", "y", "-targets", "0.5,2"}, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "-targets") {
		t.Fatalf("target 2: %v", err)
	}
}

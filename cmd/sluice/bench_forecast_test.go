package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeServeGen writes a ServeGen folder of two clients over days days:
// a daily cycle and a constant rate, 10-minute windows.
func writeServeGen(t *testing.T, days int) string {
	dir := t.TempDir()
	var a, b strings.Builder
	for i := range days * 144 {
		fmt.Fprintf(&a, "%d,%.3f,1.1,Gamma,0.8,1.2\n", i*600, 100+50*math.Sin(2*math.Pi*float64(i)/144))
		fmt.Fprintf(&b, "%d,20,1,Gamma,1,1\n", i*600)
	}
	for name, body := range map[string]string{"chunk-0-trace.csv": a.String(), "chunk-1-trace.csv": b.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// `sluice bench forecast` prints one line per horizon in the documented
// form, and on a clean daily cycle beats the last value at an hour.
func TestBenchForecast(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runBench(context.Background(), []string{"forecast", "-servegen", writeServeGen(t, 9), "-horizon", "10m,30m,60m"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v (stderr %s)", err, errOut.String())
	}
	line := regexp.MustCompile(`^forecast horizon=(\d+m) sluice=(\d+\.\d{3}) naive=(\d+\.\d{3}) seasonal_naive=(\d+\.\d{3}) coverage_p90=(\d\.\d\d)$`)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout:\n%s\nwant three lines", out.String())
	}
	for i, want := range []string{"10m", "30m", "60m"} {
		m := line.FindStringSubmatch(lines[i])
		if m == nil || m[1] != want {
			t.Fatalf("line %q, want horizon=%s in the documented form", lines[i], want)
		}
		if want == "60m" {
			var sluice, naive float64
			fmt.Sscan(m[2], &sluice)
			fmt.Sscan(m[3], &naive)
			if sluice >= naive {
				t.Errorf("60m: sluice %.3f, naive %.3f on a clean daily cycle", sluice, naive)
			}
		}
	}
	if !strings.Contains(errOut.String(), "0 windows detected as data gaps") {
		t.Errorf("stderr does not report the gaps: %s", errOut.String())
	}
}

func TestBenchForecastRejectsBadFlags(t *testing.T) {
	dir := writeServeGen(t, 2)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"forecast"}, "--servegen DIR is required"},
		{[]string{"forecast", "-servegen", dir, "-horizon", "10m,soon"}, `-horizon "10m,soon"`},
		{[]string{"forecast", "-servegen", dir}, "not more than 7 training days"},
		{[]string{"forecast", "-servegen", t.TempDir()}, "0 CSV files"},
	} {
		var out, errOut bytes.Buffer
		err := runBench(context.Background(), c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

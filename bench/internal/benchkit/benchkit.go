// Package benchkit is the harness of the `go run` benchmarks under bench/
// (overload, prefix, batch): each program is left with its scenario (what
// to start, what load to offer, which columns to report) and takes the rest
// from here:
//
//   - a leg's set-up: fresh simulators and a proxy or gateways in front
//     (Rig), stopped together;
//   - trace replay: loading with clamps and token scaling (LoadTrace),
//     cutting a slice and stretching it to a rate (Slice, Stretch);
//   - sampling the simulators' and gateways' /metrics during a leg
//     (Sampler, Sample) and summarising the samples (WeightedMean, Window,
//     PerSecond, ValueAt);
//   - the report: the run's header (Run), markdown tables and targets
//     (TableHead, Row, Targets), progress lines (Progress), and Main, which
//     prints it and writes --out and --json;
//   - the Prometheus text reader (Scrape, Sum, Label) and the simulator's
//     capacity for a mean request (Capacity).
package benchkit

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// Machine describes where the run happened: the figures are wall-clock
// measurements on a shared machine.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model,omitempty"`
	Uname      string `json:"uname"`
	Go         string `json:"go"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

// ReadMachine describes this machine now (LoadAfter is for the caller).
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: Loadavg(),
		Uname: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := exec.Command("uname", "-srvm").Output(); err == nil {
		m.Uname = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimLeft(name, "\t :"))
				break
			}
		}
	}
	return m
}

// Loadavg is the 1/5/15-minute load average, or "n/a".
func Loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// MsText formats milliseconds for a table: "1.23 s", "45 ms", "3.2 ms".
func MsText(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	default:
		return fmt.Sprintf("%.1f ms", v)
	}
}

// CommandLine is `go run ./<pkg> args...`, quoted for a shell.
func CommandLine(pkg string, args []string) string {
	parts := []string{"go", "run", pkg}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\`*?") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Metric is one sample of a Prometheus text exposition.
type Metric struct {
	Name, Labels string // Labels: the raw {…} set, "" without labels
	Value        float64
}

// Scrape reads a Prometheus text exposition; nil on any error.
func Scrape(ctx context.Context, c *http.Client, url string) []Metric {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	var out []Metric
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		out = append(out, Metric{Name: name, Labels: labels, Value: v})
	}
	if sc.Err() != nil {
		return nil
	}
	return out
}

// Sum adds every series of name.
func Sum(ms []Metric, name string) float64 {
	var t float64
	for _, m := range ms {
		if m.Name == name {
			t += m.Value
		}
	}
	return t
}

// Label reads key="value" from a {…} label set (values without escapes).
func Label(labels, key string) string {
	i := strings.Index(labels, key+`="`)
	if i < 0 {
		return ""
	}
	if i > 0 && labels[i-1] != '{' && labels[i-1] != ',' {
		return Label(labels[i+len(key):], key) // matched inside another label's name
	}
	rest := labels[i+len(key)+2:]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return rest
}

// SumWhere adds the series of name whose labels include key="value".
func SumWhere(ms []Metric, name, key, value string) float64 {
	var t float64
	for _, m := range ms {
		if m.Name == name && Label(m.Labels, key) == value {
			t += m.Value
		}
	}
	return t
}

// ByLabel sums the positive series of name by the value of their label
// key, e.g. refusals by reason.
func ByLabel(ms []Metric, name, key string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ms {
		if m.Name == name && m.Value > 0 {
			out[Label(m.Labels, key)] += m.Value
		}
	}
	return out
}

// ByValue lists counts by name, largest first (ties by name): "a 3, b 1";
// "-" when there are none.
func ByValue(counts map[string]float64) string {
	if len(counts) == 0 {
		return "-"
	}
	keys := slices.Collect(maps.Keys(counts))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + strconv.FormatFloat(counts[k], 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}

// Main runs a benchmark: run gets a context cancelled by SIGINT/SIGTERM and
// writes its markdown report; the report is printed, and also written to
// out (markdown) and jsonOut (the returned value as JSON) when set. It
// exits 1 on error, prefixing the message with name.
func Main[R any](name, out, jsonOut string, run func(ctx context.Context, md *strings.Builder) (R, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var md strings.Builder
	rep, err := run(ctx, &md)
	fmt.Print(md.String())
	if err == nil && out != "" {
		err = os.WriteFile(out, []byte(md.String()), 0o644)
	}
	if err == nil && jsonOut != "" {
		var b []byte
		if b, err = json.MarshalIndent(rep, "", "  "); err == nil {
			err = os.WriteFile(jsonOut, append(b, '\n'), 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// ErrWriter writes a report, keeping the first write error: reports are
// many small Printf calls and one check at the end.
type ErrWriter struct {
	W   io.Writer
	Err error
}

// Printf writes unless an earlier write failed.
func (e *ErrWriter) Printf(format string, args ...any) {
	if e.Err == nil {
		_, e.Err = fmt.Fprintf(e.W, format, args...)
	}
}

// Capacity is the simulator's capacity (req/s per server) for a mean
// request of p prompt and o output tokens. Config.Capacity takes whole
// tokens; while the batch is slot-bound its reciprocal (time per request) is
// linear in p and o, which is also why the mean request gives the capacity
// of a mix. So interpolate 1/capacity between the whole-token points.
func Capacity(c sim.Config, p, o float64) float64 {
	p0, o0 := int(math.Floor(p)), int(math.Floor(o))
	inv := func(p, o int) float64 {
		r, _ := c.Capacity(p, o)
		return 1 / r
	}
	base := inv(p0, o0)
	t := base + (p-float64(p0))*(inv(p0+1, o0)-base) + (o-float64(o0))*(inv(p0, o0+1)-base)
	return 1 / t
}

// Header writes the report lines every benchmark starts with: the command
// that reproduces it, the machine and when it ran.
func (e *ErrWriter) Header(command string, m Machine, started time.Time, elapsed float64) {
	e.Printf("- Command: `%s`\n", command)
	e.Printf("- Machine: %d CPUs", m.CPUs)
	if m.CPUModel != "" {
		e.Printf(" (%s)", m.CPUModel)
	}
	e.Printf(", `%s`, %s; load average %s before, %s after (shared machine: other jobs may have run)\n",
		m.Uname, m.Go, m.LoadBefore, m.LoadAfter)
	e.Printf("- Date: %s, %.0f s in total\n", started.Format("2006-01-02 15:04 UTC"), elapsed)
}

// PercentileMs is the nearest-rank p-th percentile of ds in milliseconds,
// 0 when ds is empty. It sorts ds in place.
func PercentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	return float64(ds[min(max(rank, 1), len(ds))-1]) / float64(time.Millisecond)
}

// Median is the median of xs (the mean of the middle two for an even
// count), 0 when xs is empty. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits on a ServeGen folder, so that a malformed one cannot claim
// absurd memory.
const (
	maxServeGenWindows = 1 << 20 // ~20 years of 10-minute windows
	maxServeGenRate    = 1e9     // requests/s in one window of one client
	maxServeGenFiles   = 100_000
	maxServeGenCV      = 1e6 // inter-arrival CV; m-mid's largest is ~1038
)

// ServeGenWindow is one row of a ServeGen rate file: a client's mean
// arrival rate over the window starting Start after the trace began, and
// the coefficient of variation of its inter-arrival times there.
type ServeGenWindow struct {
	Start time.Duration
	Rate  float64 // requests/s
	CV    float64 // 0 where the row has no cv (absent or empty)
}

// ParseServeGenCSV reads one ServeGen client file (Xiang et al., 2025,
// github.com/alibaba/ServeGen data/): no header, one row per window,
// window_start_s,rate,cv,pattern,arg1,arg2. The first three columns are
// read, cv being optional; the rest (the inter-arrival distribution's
// family and parameters) are not looked at.
func ParseServeGenCSV(r io.Reader) ([]ServeGenWindow, error) {
	cr := newCSV(r)
	var out []ServeGenWindow
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(rec) < 2 {
			return nil, fmt.Errorf("line %d: %d columns, want window_start_s, rate and the rest", line, len(rec))
		}
		start, err := strconv.ParseFloat(strings.TrimSpace(rec[0]), 64)
		if err != nil || !(start >= 0 && start <= maxTraceSeconds) || start != math.Trunc(start) {
			return nil, fmt.Errorf("line %d: window_start_s %q: want whole seconds from 0 to %g", line, rec[0], maxTraceSeconds)
		}
		rate, err := strconv.ParseFloat(strings.TrimSpace(rec[1]), 64)
		if err != nil || !(rate >= 0 && rate <= maxServeGenRate) {
			return nil, fmt.Errorf("line %d: rate %q: want a number from 0 to %g", line, rec[1], maxServeGenRate)
		}
		cv, err := parseServeGenCV(rec)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(out) >= maxServeGenWindows {
			return nil, fmt.Errorf("line %d: more than %d windows", line, maxServeGenWindows)
		}
		out = append(out, ServeGenWindow{Start: time.Duration(start) * time.Second, Rate: rate, CV: cv})
	}
}

// parseServeGenCV reads a row's third column, the inter-arrival CV: 0 when
// the row has none, else a number from 0 to maxServeGenCV.
func parseServeGenCV(rec []string) (float64, error) {
	if len(rec) < 3 || strings.TrimSpace(rec[2]) == "" {
		return 0, nil
	}
	cv, err := strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
	if err != nil || !(cv >= 0 && cv <= maxServeGenCV) {
		return 0, fmt.Errorf("cv %q: want a number from 0 to %g", rec[2], maxServeGenCV)
	}
	return cv, nil
}

// SumServeGen adds up the clients' windows into one rate series with one
// value per window (a window no client reports counts as zero). The window
// length is the smallest step between window starts.
func SumServeGen(clients [][]ServeGenWindow) (rates []float64, window time.Duration, err error) {
	per, window, err := AlignServeGen(clients)
	if err != nil {
		return nil, 0, err
	}
	rates = make([]float64, len(per[0]))
	for _, c := range per {
		for i, r := range c {
			rates[i] += r
		}
	}
	return rates, window, nil
}

// AlignServeGen puts each client's windows on the common grid: one rate
// series per client, one value per window (zero where it reports none).
func AlignServeGen(clients [][]ServeGenWindow) (rates [][]float64, window time.Duration, err error) {
	var starts []time.Duration
	for _, c := range clients {
		for _, w := range c {
			starts = append(starts, w.Start)
		}
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)
	if len(starts) < 2 {
		return nil, 0, errors.New("fewer than two distinct windows")
	}
	for i := 1; i < len(starts); i++ {
		if d := starts[i] - starts[i-1]; window == 0 || d < window {
			window = d
		}
	}
	first := starts[0]
	n := int((starts[len(starts)-1]-first)/window) + 1
	if n > maxServeGenWindows {
		return nil, 0, fmt.Errorf("%d windows of %v: more than %d", n, window, maxServeGenWindows)
	}
	rates = make([][]float64, len(clients))
	for i, c := range clients {
		rates[i] = make([]float64, n)
		for _, w := range c {
			if (w.Start-first)%window != 0 {
				return nil, 0, fmt.Errorf("window at %v is not on the %v grid", w.Start, window)
			}
			rates[i][(w.Start-first)/window] += w.Rate
		}
	}
	return rates, window, nil
}

// LoadServeGenDir reads every *.csv in dir as a ServeGen client file and
// returns the summed rate series and its window length.
func LoadServeGenDir(dir string) ([]float64, time.Duration, error) {
	clients, _, window, err := LoadServeGenClients(dir)
	if err != nil {
		return nil, 0, err
	}
	rates := make([]float64, len(clients[0]))
	for _, c := range clients {
		for i, r := range c {
			rates[i] += r
		}
	}
	return rates, window, nil
}

// LoadServeGenClients reads every *.csv in dir as a ServeGen client file
// and returns each client's rate series on the common grid, the clients'
// names (the file names without .csv) and the window length.
func LoadServeGenClients(dir string) ([][]float64, []string, time.Duration, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("bench: servegen: %w", err)
	}
	if len(files) == 0 || len(files) > maxServeGenFiles {
		return nil, nil, 0, fmt.Errorf("bench: servegen %s: %d CSV files, want 1 to %d", dir, len(files), maxServeGenFiles)
	}
	var clients [][]ServeGenWindow
	names := make([]string, 0, len(files))
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("bench: servegen: %w", err)
		}
		ws, err := ParseServeGenCSV(f)
		f.Close()
		if err != nil {
			return nil, nil, 0, fmt.Errorf("bench: servegen %s: %w", name, err)
		}
		clients = append(clients, ws)
		names = append(names, strings.TrimSuffix(filepath.Base(name), ".csv"))
	}
	rates, window, err := AlignServeGen(clients)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("bench: servegen %s: %w", dir, err)
	}
	return rates, names, window, nil
}

package bench

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const serveGenSample = "0,0,0,,0,0\n600,1.5,1.2,Gamma,0.69,1.44\n1200,2.25,0.9,Weibull,1.1,0.4\n"

func TestParseServeGenCSV(t *testing.T) {
	ws, err := ParseServeGenCSV(strings.NewReader(serveGenSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []ServeGenWindow{{0, 0, 0}, {10 * time.Minute, 1.5, 1.2}, {20 * time.Minute, 2.25, 0.9}}
	if len(ws) != len(want) {
		t.Fatalf("%v, want %v", ws, want)
	}
	for i := range want {
		if ws[i] != want[i] {
			t.Errorf("window %d: %+v, want %+v", i, ws[i], want[i])
		}
	}
	// cv is optional: absent or empty reads as 0.
	if ws, err := ParseServeGenCSV(strings.NewReader("0,1\n600,2, \n")); err != nil || len(ws) != 2 || ws[0].CV != 0 || ws[1].CV != 0 {
		t.Errorf("rows without a cv: %+v, %v", ws, err)
	}
	for _, bad := range []string{"0\n", "x,1\n", "0,-1\n", "0,NaN\n", "1.5,1\n", "-600,1\n", "0,1e300\n",
		"0,1,x\n", "0,1,-1\n", "0,1,NaN\n", "0,1,Inf\n", "0,1,1e7\n"} {
		if _, err := ParseServeGenCSV(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: error %v, want one naming line 1", bad, err)
		}
	}
}

// The clients are summed window by window; a window missing in one file
// counts as zero there.
func TestLoadServeGenDirSumsClients(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "chunk-0-trace.csv"), []byte(serveGenSample), 0o600)
	os.WriteFile(filepath.Join(dir, "chunk-1-trace.csv"), []byte("600,1,1,Gamma,1,1\n1800,4,1,Gamma,1,1\n"), 0o600)
	rates, win, err := LoadServeGenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if win != 10*time.Minute || len(rates) != 4 || rates[0] != 0 || rates[1] != 2.5 || rates[2] != 2.25 || rates[3] != 4 {
		t.Errorf("rates %v window %v, want [0 2.5 2.25 4] every 10m", rates, win)
	}
	os.WriteFile(filepath.Join(dir, "chunk-2-trace.csv"), []byte("900000000,1,1,Gamma,1,1\n"), 0o600)
	if _, _, err := LoadServeGenDir(dir); err == nil || !strings.Contains(err.Error(), "windows") {
		t.Errorf("28 years of 10-minute windows: error %v", err)
	}
	if _, _, err := LoadServeGenDir(t.TempDir()); err == nil {
		t.Error("an empty folder was accepted")
	}
}

func TestRealServeGenFolder(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "traces", "servegen", "language", "m-mid")
	if _, err := os.Stat(dir); err != nil {
		dir = "/work/shared/traces/servegen/language/m-mid"
		if _, err := os.Stat(dir); err != nil {
			t.Skip("ServeGen m-mid folder not present")
		}
	}
	rates, win, err := LoadServeGenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, r := range rates {
		sum += r
	}
	if mean := sum / float64(len(rates)); len(rates) != 2016 || win != 10*time.Minute || math.Abs(mean-1790) > 1 {
		t.Errorf("%d windows of %v, mean %.0f req/s; want 2016 of 10m, mean 1790 (traces/README.md)", len(rates), win, mean)
	}
}

func FuzzParseServeGenCSV(f *testing.F) {
	f.Add([]byte(serveGenSample))
	f.Add([]byte("0,1\n0,2\n9e8,1e9\n"))
	f.Add([]byte("\"600\",\"1\",,\n"))
	f.Add([]byte("0,1,2.5\n600,1, 1e6 ,Gamma\n1200,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, err := ParseServeGenCSV(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, w := range ws {
			if w.Start < 0 || !(w.Rate >= 0) || w.Rate > maxServeGenRate || !(w.CV >= 0) || w.CV > maxServeGenCV {
				t.Fatalf("window %+v", w)
			}
		}
		if rates, win, err := SumServeGen([][]ServeGenWindow{ws}); err == nil {
			if win <= 0 || len(rates) == 0 || len(rates) > maxServeGenWindows {
				t.Fatalf("%d rates, window %v", len(rates), win)
			}
		}
	})
}

package benchkit

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

func TestServeGenSharesBusiestFirst(t *testing.T) {
	dir := t.TempDir()
	for name, rates := range map[string][2]float64{"a": {1, 3}, "b": {10, 0}, "c": {0.5, 0.5}, "idle": {0, 0}} {
		body := fmt.Sprintf("0,%g,1,Gamma,1,1\n600,%g,1,Gamma,1,1\n", rates[0], rates[1])
		if err := os.WriteFile(filepath.Join(dir, name+".csv"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names, shares, err := ServeGenShares(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b", "a", "c"}
	wantS := []float64{5, 2, 0.5}
	for i := range want {
		if names[i] != want[i] || math.Abs(shares[i]-wantS[i]) > 1e-9 {
			t.Fatalf("ServeGenShares = %v %v, want %v %v", names, shares, want, wantS)
		}
	}
	if _, _, err := ServeGenShares(dir, 4); err == nil {
		t.Fatal("asked for 4 clients with traffic of 3: no error")
	}
}

func TestDealKeepsOrderAndShare(t *testing.T) {
	arr := bench.Constant(1000, 10*time.Second, 1, 1)
	a, b := Deal(arr, 0.3, 7)
	if len(a)+len(b) != len(arr) {
		t.Fatalf("dealt %d + %d of %d", len(a), len(b), len(arr))
	}
	if got := float64(len(a)) / float64(len(arr)); math.Abs(got-0.3) > 0.03 {
		t.Fatalf("share %.3f, want about 0.3", got)
	}
	for _, part := range [][]bench.Arrival{a, b} {
		for i := 1; i < len(part); i++ {
			if part[i].At < part[i-1].At {
				t.Fatal("a class is out of order")
			}
		}
	}
	a2, _ := Deal(arr, 0.3, 7)
	if len(a2) != len(a) || a2[0].At != a[0].At || a2[len(a2)-1].At != a[len(a)-1].At {
		t.Fatal("the same seed dealt differently")
	}
}

package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyDefersOpenCoded asks the compiler how it builds this package's
// defers: every one is to be open-coded (inlined at each return). The
// relay of every proxied request runs here, and a defer the compiler puts
// on a list instead (a function with more than 15 returns x defers, a
// defer in a loop) costs each call deferprocStack and deferreturn: when
// relay's return statements grew from 7 to 8 with its two defers, a
// proxied request took ~400 instructions more (docs/BENCHMARKS.md §9,
// branch hotpath2).
func TestProxyDefersOpenCoded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package with the compiler's defer report")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to ask: %v", err)
	}
	// The package alone is reported (-gcflags=pattern=...); the build
	// cache replays the report when the package has not changed.
	out, err := exec.Command(goTool, "build", "-gcflags=github.com/sluice-gw/sluice/internal/proxy=-d=defer", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	seen := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, " defer") || strings.HasPrefix(line, "#") {
			continue
		}
		seen++
		if strings.HasSuffix(line, ": open-coded defer") {
			continue
		}
		t.Errorf("%s: not open-coded: a function with too many returns for its defers (returns x defers > 15), or a defer in a loop; split the function", line)
	}
	if seen == 0 {
		t.Fatalf("the compiler reported no defer at all (has -d=defer changed?):\n%s", out)
	}
}

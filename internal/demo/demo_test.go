package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemoPrintsTable runs a short demo end to end: simulators, the plain
// proxy, the gateway and both replays.
func TestDemoPrintsTable(t *testing.T) {
	var out bytes.Buffer
	rep, err := Run(context.Background(), Options{LegDuration: 3 * time.Second}, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Before / after", "plain round robin", "Sluice", "goodput", "p99 TTFT", "error rate"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("missing %q in\n%s", want, out.String())
		}
	}
	if rep.Direct.Offered == 0 || rep.Direct.Offered != rep.Sluice.Offered {
		t.Fatalf("legs offered %d and %d requests, want the same non-zero load", rep.Direct.Offered, rep.Sluice.Offered)
	}
	if rep.Sluice.OK == 0 {
		t.Fatal("nothing served through Sluice")
	}
}

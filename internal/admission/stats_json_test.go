package admission

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestClassStatsDelayTargetInMilliseconds: /status's classes[] carry the
// controlled-delay target as delay_target_ms, in milliseconds as /status's
// other times are; it was delay_target in nanoseconds (500000000 for
// 500ms).
func TestClassStatsDelayTargetInMilliseconds(t *testing.T) {
	b, err := json.Marshal(Stats{Classes: []ClassStats{{Class: "interactive", Queued: 3, DelayTarget: 500 * time.Millisecond, Congested: true}}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Classes []map[string]any `json:"classes"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Classes[0]
	if c["delay_target_ms"] != 500.0 || c["class"] != "interactive" || c["queued"] != 3.0 || c["congested"] != true {
		t.Fatalf("class stats %s: want delay_target_ms 500 beside the other fields", b)
	}
	if strings.Contains(string(b), `"delay_target"`) {
		t.Fatalf("class stats %s still carry delay_target (ns)", b)
	}
}

package app

import (
	"path/filepath"
	"testing"
	"time"
)

// A pool takes a backend's late start past its interactive delay target
// as no reported room (gateway.Pool.LateStart, branch latebound): a
// quarter of the model's interactive objective by default,
// admission.delay_target when set. Without the wiring the pool's
// LateStart is 0 and every start late by the prompt bound (a long
// prompt's prefill) took the room away.
func TestPoolLateStartIsTheInteractiveDelayTarget(t *testing.T) {
	const backends = "    backends: [{url: \"http://127.0.0.1:1\"}]\n"
	cases := []struct {
		name, src string
		want      time.Duration
	}{
		{"default", "models:\n  - name: m1\n" + backends, 500 * time.Millisecond},
		{"a model's objective", "models:\n  - name: m1\n    max_wait: 4s\n" + backends, time.Second},
		{"a delay target", "admission: {delay_target: 300ms}\nmodels:\n  - name: m1\n" + backends, 300 * time.Millisecond},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		writeFile(t, path, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+c.src)
		a := newApp(t, path)
		if got := a.gw.Runtime().Pools["m1"].LateStart; got != c.want {
			t.Errorf("%s: the pool's LateStart %v, want %v", c.name, got, c.want)
		}
	}
}

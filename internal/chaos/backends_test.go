package chaos

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestPoolFaults checks that each fault of the switch is what a client
// straight at the backend sees: the gateway is then measured against real
// misbehaviour, not a label.
func TestPoolFaults(t *testing.T) {
	p, err := startPool(1, simConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	c := &http.Client{}
	body := chatBody("fault", 4, 8, true)
	ask := func(timeout time.Duration) (outcome, time.Duration, string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return streamRequest(ctx, c, p.urls[0], body)
	}
	cases := []struct {
		f    backendFault
		want outcome
		why  string
	}{
		{faultNone, served, ""},
		{faultCrash, unannounced, "connection closed without an answer"},
		{faultGarbage, unannounced, "200 whose body is not a completion"},
		{faultBrokenSSE, unannounced, "stream event that is neither a chunk nor an error"},
	}
	for _, tc := range cases {
		p.setFault(0, tc.f)
		got, _, why := ask(30 * time.Second)
		if got != tc.want || (tc.why != "" && why != tc.why && !(tc.f == faultCrash && why == "connection reset")) {
			t.Errorf("fault %d: outcome %d (%q), want %d (%q)", tc.f, got, why, tc.want, tc.why)
		}
	}

	p.setFault(0, faultHang)
	if got, _, why := ask(300 * time.Millisecond); got != unannounced || why != "hang (no end within the client timeout)" {
		t.Errorf("hang: outcome %d (%q)", got, why)
	}

	// Slow: the same request takes several times longer than a healthy one.
	// A healthy answer's floor is read from the engine's configuration (8
	// decode steps), not timed: a loaded machine can stretch a timed healthy
	// request, never shorten the slow one, so only a slow fault that is not
	// applied can fail this.
	healthy := 8 * (simConfig.DecodeStepBase + simConfig.DecodeStepPerSeq)
	p.setFault(0, faultSlow)
	start := time.Now()
	if got, _, why := ask(60 * time.Second); got != served {
		t.Fatalf("slow: %d %q", got, why)
	}
	if slow := time.Since(start); slow < 3*healthy {
		t.Errorf("slow backend took %s, a healthy one %s: want several times longer", slow, healthy)
	}
}

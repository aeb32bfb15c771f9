package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// TestBenchAgainstASimulator runs `sluice bench` against a real simulator:
// every planned request is sent and answered, the model is discovered, and
// the JSON on stdout follows the text report.
func TestBenchAgainstASimulator(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls, stop, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", 1, sim.Config{Model: "sim-model", DecodeStepBase: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var out, errOut bytes.Buffer
	err = runBench(ctx, []string{"--target", urls[0], "--rate", "20", "--duration", "500ms", "--input-tokens", "8", "--output-tokens", "4",
		"--api-key", "k1", "--api-key", "k2", "--header", "X-Test: 1", "--json", "-", "--quiet"}, &out, &errOut)
	if err != nil {
		t.Fatalf("bench: %v (stderr %s)", err, errOut.String())
	}
	text, js, ok := strings.Cut(out.String(), "\n{")
	if !ok {
		t.Fatalf("no JSON after the report:\n%s", out.String())
	}
	var res struct {
		Model         string `json:"model"`
		Planned, Sent int
		OK            int `json:"ok"`
	}
	if err := json.Unmarshal([]byte("{"+js), &res); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if res.Model != "sim-model" || res.Planned != 10 || res.Sent != 10 || res.OK != 10 {
		t.Errorf("result %+v, want model sim-model and 10 planned, sent and OK", res)
	}
	if !strings.Contains(text, "sim-model") {
		t.Errorf("report does not name the model:\n%s", text)
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "1"}, "--target is required"},
		{[]string{"--target", "http://127.0.0.1:1"}, "exactly one of --rate"},
		{[]string{"--target", "http://127.0.0.1:1", "--rate", "1", "--header", "nocolon"}, `--header "nocolon"`},
		{[]string{"--target", "http://127.0.0.1:1", "--rate", "1", "--arrival", "burst", "--model", "m"}, `--arrival "burst"`},
	} {
		var out, errOut bytes.Buffer
		err := runBench(context.Background(), c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	azureSample = "TIMESTAMP,ContextTokens,GeneratedTokens\n" +
		"2023-11-16 18:15:46.6805900,374,44\n" +
		"2023-11-16 18:15:50.9951690,396,109\n" +
		"2023-11-16 18:15:46.1805900,10,1\n"
	mooncakeSample = `{"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [0, 1, 2]}

{"timestamp": 3000, "input_length": 600, "output_length": 7, "hash_ids": [0, 3]}
{"timestamp": 1500.5, "input_length": 10, "output_length": 1, "hash_ids": []}
`
	genericSample = "arrival_s,input_tokens,output_tokens\n0.5,100,10\n0,200,20\n2.25,300,30\n"
)

func TestParseAzureCSV(t *testing.T) {
	arr, err := ParseAzureCSV(strings.NewReader(azureSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []Arrival{
		{At: 0, InputTokens: 10, OutputTokens: 1},
		{At: 500 * time.Millisecond, InputTokens: 374, OutputTokens: 44},
		{At: 4814579 * time.Microsecond, InputTokens: 396, OutputTokens: 109},
	}
	if !slices.EqualFunc(arr, want, arrivalEq) {
		t.Errorf("got %+v\nwant %+v", arr, want)
	}
	for _, bad := range []string{
		"a,b,c\n",
		"TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n",
		"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,-1,1\n",
		"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1\n",
	} {
		if _, err := ParseAzureCSV(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestParseMooncakeJSONL(t *testing.T) {
	arr, err := ParseMooncakeJSONL(strings.NewReader(mooncakeSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []Arrival{
		{At: 0, InputTokens: 1100, OutputTokens: 5, HashIDs: []int{0, 1, 2}},
		{At: 1500500 * time.Microsecond, InputTokens: 10, OutputTokens: 1, HashIDs: []int{}},
		{At: 3 * time.Second, InputTokens: 600, OutputTokens: 7, HashIDs: []int{0, 3}},
	}
	if !slices.EqualFunc(arr, want, arrivalEq) {
		t.Errorf("got %+v\nwant %+v", arr, want)
	}
	for _, bad := range []string{`{"timestamp": 0}`, `not json`, `{"timestamp": 1e300, "input_length": 1, "output_length": 1}`} {
		if _, err := ParseMooncakeJSONL(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestParseArrivalCSV(t *testing.T) {
	for _, in := range []string{genericSample, strings.SplitN(genericSample, "\n", 2)[1]} {
		arr, err := ParseArrivalCSV(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		want := []Arrival{
			{At: 0, InputTokens: 200, OutputTokens: 20},
			{At: 500 * time.Millisecond, InputTokens: 100, OutputTokens: 10},
			{At: 2250 * time.Millisecond, InputTokens: 300, OutputTokens: 30},
		}
		if !slices.EqualFunc(arr, want, arrivalEq) {
			t.Errorf("got %+v\nwant %+v", arr, want)
		}
	}
	if _, err := ParseArrivalCSV(strings.NewReader("1,2,3\nx,2,3\n")); err == nil {
		t.Error("a bad row after the first must be an error, not a header")
	}
}

func TestLoadTraceDetectsFormat(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"azure.csv":     azureSample,
		"moon.jsonl":    mooncakeSample,
		"generic.csv":   genericSample,
		"bom-azure.csv": "\ufeff" + azureSample,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		arr, err := LoadTrace(p, TraceOptions{TimeScale: 0.5})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(arr) != 3 || arr[0].At != 0 {
			t.Errorf("%s: %+v", name, arr)
		}
	}
	arr, _ := LoadTrace(filepath.Join(dir, "generic.csv"), TraceOptions{TimeScale: 0.5})
	if arr[2].At != 1125*time.Millisecond {
		t.Errorf("time scale not applied: last at %v", arr[2].At)
	}
	if _, err := LoadTrace(filepath.Join(dir, "missing.csv"), TraceOptions{}); err == nil {
		t.Error("no error for a missing file")
	}
}

// TestRealTraces smoke-parses the shared public traces when present.
func TestRealTraces(t *testing.T) {
	const root = "/work/shared/traces"
	tests := []struct {
		path       string
		rows       int
		minSpan    time.Duration
		withHashes bool
	}{
		{"azure2023/AzureLLMInferenceTrace_conv.csv", 19366, 50 * time.Minute, false},
		{"mooncake_fast25/conversation_trace.jsonl", 12031, 50 * time.Minute, true},
		{"mooncake_fast25/synthetic_trace.jsonl", 3993, 10 * time.Minute, true},
	}
	for _, tt := range tests {
		p := filepath.Join(root, tt.path)
		if _, err := os.Stat(p); err != nil {
			t.Logf("skip %s: %v", tt.path, err)
			continue
		}
		arr, err := LoadTrace(p, TraceOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		if len(arr) != tt.rows {
			t.Errorf("%s: %d rows, want %d", tt.path, len(arr), tt.rows)
		}
		if span := arr[len(arr)-1].At; span < tt.minSpan || span > 2*time.Hour {
			t.Errorf("%s: span %v", tt.path, span)
		}
		if got := arr[0].HashIDs != nil; got != tt.withHashes {
			t.Errorf("%s: hash ids present = %v", tt.path, got)
		}
		fast := Reshape(arr, TraceOptions{TimeScale: 0.01, MaxInputTokens: 4096, Duration: 10 * time.Second})
		for _, a := range fast {
			if a.InputTokens > 4096 || a.At >= 10*time.Second {
				t.Fatalf("%s: reshape left %+v", tt.path, a)
			}
		}
	}
}

func arrivalEq(a, b Arrival) bool {
	return a.At == b.At && a.InputTokens == b.InputTokens && a.OutputTokens == b.OutputTokens &&
		slices.Equal(a.HashIDs, b.HashIDs) && a.Tenant == b.Tenant
}

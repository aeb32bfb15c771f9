package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// checkPlan is what every successful parse must satisfy.
func checkPlan(t *testing.T, arr []Arrival) {
	t.Helper()
	for i, a := range arr {
		if a.At < 0 || a.InputTokens < 0 || a.OutputTokens < 0 {
			t.Fatalf("arrival %d: %+v", i, a)
		}
		if i > 0 && a.At < arr[i-1].At {
			t.Fatalf("arrival %d out of order", i)
		}
	}
	if len(arr) > 0 && arr[0].At != 0 {
		t.Fatalf("first arrival at %v, want 0", arr[0].At)
	}
	// Reshaping a parsed plan must not panic either.
	_ = Reshape(arr, TraceOptions{TimeScale: 0.5, RateMultiplier: 1.5, MaxInputTokens: 100})
}

func FuzzParseAzureCSV(f *testing.F) {
	f.Add([]byte(azureSample))
	f.Add([]byte("TIMESTAMP,ContextTokens,GeneratedTokens\n0001-01-01 00:00:00,1,1\n9999-12-31 23:59:59.9999999,1,1\n"))
	f.Add([]byte("TIMESTAMP,a,b\n\"2023-11-16 18:15:46\",\"1\",2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		arr, err := ParseAzureCSV(bytes.NewReader(data))
		if err == nil {
			checkPlan(t, arr)
		}
	})
}

func FuzzParseMooncakeJSONL(f *testing.F) {
	f.Add([]byte(mooncakeSample))
	f.Add([]byte(`{"timestamp": -5, "input_length": 0, "output_length": 0, "hash_ids": null}`))
	f.Add([]byte(`{"timestamp": 1e12, "input_length": 1, "output_length": 1}` + "\n" + `{"timestamp": -1e12, "input_length": 1, "output_length": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		arr, err := ParseMooncakeJSONL(bytes.NewReader(data))
		if err == nil {
			checkPlan(t, arr)
		}
	})
}

func FuzzParseArrivalCSV(f *testing.F) {
	f.Add([]byte(genericSample))
	f.Add([]byte("1e9,1,1\n-1e9,1,1\n"))
	f.Add([]byte("NaN,1,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		arr, err := ParseArrivalCSV(bytes.NewReader(data))
		if err == nil {
			checkPlan(t, arr)
		}
	})
}

// FuzzSSE checks that line splitting does not depend on where reads split
// the stream, and that event accounting never panics or goes negative.
func FuzzSSE(f *testing.F) {
	f.Add([]byte(sampleStream), 10)
	f.Add([]byte("data: [DONE]\r\n"), 3)
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":1}}\ndata: {\"content\":\"x\"}"), 0)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 {
			cut = -cut
		}
		cut %= len(data) + 1
		whole := splitLines(string(data))
		parts := splitLines(string(data[:cut]), string(data[cut:]))
		if !slices.Equal(whole, parts) {
			t.Fatalf("split at %d changed the lines:\n%q\n%q", cut, whole, parts)
		}
		var st streamStats
		st.hist = new(histogram)
		for i, l := range whole {
			st.line([]byte(l), time.Duration(i))
		}
		if st.events < 0 || st.gaps != max(st.events-1, 0) || st.maxGap < 0 {
			t.Fatalf("events %d gaps %d", st.events, st.gaps)
		}
	})
}

// FuzzErrorCode: an error answer's body, whatever it is, gives a code of
// at most 64 bytes or none; a gateway's error object gives its code.
func FuzzErrorCode(f *testing.F) {
	f.Add([]byte(`{"error":{"message":"m","type":"server_error","param":null,"code":"pool_saturated"}}`))
	f.Add([]byte(`{"error":{"code":null}}`))
	f.Add([]byte(`{"error":{"code":429}}`))
	f.Add([]byte("busy"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if c := errorCode(body); len(c) > 64 {
			t.Fatalf("code of %d bytes", len(c))
		}
	})
}

func TestErrorCode(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":{"message":"m","type":"server_error","param":null,"code":"pool_saturated"}}`: "pool_saturated",
		`{"error":{"code":null}}`: "", `{"error":{"code":429}}`: "", `{"error":{}}`: "", "busy": "",
		`{"error":{"code":"` + strings.Repeat("x", 65) + `"}}`: "",
	} {
		if got := errorCode([]byte(body)); got != want {
			t.Errorf("errorCode(%.40q) = %q, want %q", body, got, want)
		}
	}
}

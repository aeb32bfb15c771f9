package openai

import (
	"bytes"
	"strings"
	"testing"
)

// scanID feeds body to an IDScan in pieces of n bytes.
func scanID(body []byte, n int) string {
	var s IDScan
	for len(body) > 0 {
		k := min(n, len(body))
		s.Write(body[:k])
		body = body[k:]
	}
	return s.ID()
}

func TestIDScanFindsTheTopLevelIDAnywhere(t *testing.T) {
	big := strings.Repeat(`x\"y`, 100_000) // 400 KB of text with escaped quotes
	for body, want := range map[string]string{
		`{"id":"resp_1","object":"response"}`:                                                     "resp_1",
		`{"object":"response","output":[{"id":"msg_1","text":"` + big + `"}],"id":"resp_late"}`:   "resp_late",
		`{"metadata":{"id":"nested"},"tools":[{"id":"t"}],"x":"\"id\":\"fake\"","id" : "resp_2"}`: "resp_2",
		`{"idx":"a","i":"b","ID":"c"}`:                                                            "",
		`{"id":5,"object":"response"}`:                                                            "",
		`{"id":"resp_\u0031"}`:                                                                    "", // escaped: not kept
		`{"id":"` + strings.Repeat("a", MaxScannedID+1) + `"}`:                                    "",
		`["id","x"]`: "",
		`{"a":"id","b":["id",":","x"],"c":{"id":"n"},"id":"last"}`: "last",
	} {
		for _, n := range []int{1, 3, 7, 4096, len(body)} {
			if got := scanID([]byte(body), n); got != want {
				t.Fatalf("%.80s… in pieces of %d: %q, want %q", body, n, got, want)
			}
		}
	}
}

func FuzzIDScan(f *testing.F) {
	f.Add([]byte(`{"object":"response","output":[{"id":"msg"}],"id":"resp_1"}`), uint8(3))
	f.Add([]byte(`{"id":"a","id":"b"}`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		got := scanID(data, int(n)+1)
		if !ValidObject(data) || bytes.IndexByte(data, '\\') >= 0 {
			return // any input: bounded, no panic
		}
		// What a whole answer's reading finds, for an id the scan keeps.
		if want := ReadResponse(data).ID; len(want) <= MaxScannedID && got != want {
			t.Fatalf("scan %q, ReadResponse %q, of %q", got, want, data)
		}
	})
}

// BenchmarkIDScan: a 1 MiB answer whose id is last, in the relay's
// 32 KiB reads.
func BenchmarkIDScan(b *testing.B) {
	body := []byte(`{"object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"` +
		strings.Repeat(`word \"quoted\" `, 1<<16) + `"}]}],"usage":{"input_tokens":1,"output_tokens":2},"id":"resp_1"}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if scanID(body, 32<<10) != "resp_1" {
			b.Fatal("no id")
		}
	}
}

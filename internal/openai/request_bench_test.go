package openai

import (
	"strings"
	"testing"
)

// benchBodies are a small chat request and one with a long conversation,
// the shapes the gateway peeks at on every request.
var benchBodies = map[string][]byte{
	"small": []byte(`{"model":"m1","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`),
	"large": []byte(`{"model":"m1","temperature":0,"stream":true,"stream_options":{"include_usage":true},"messages":[` +
		strings.Repeat(`{"role":"user","content":"`+strings.Repeat(`lorem ipsum \"dolor\" sit amet, `, 40)+`"},`, 20) +
		`{"role":"user","content":"end"}],"max_tokens":256,"top_p":0.9,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`),
}

func BenchmarkParseRequest(b *testing.B) {
	for name, body := range benchBodies {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := ParseRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReplaceModel(b *testing.B) {
	body := benchBodies["large"]
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ReplaceModel(body, "org/m1-instruct"); err != nil {
			b.Fatal(err)
		}
	}
}

package openai

import (
	"strings"
	"testing"
)

// benchBodies are a small chat request and one with a long conversation,
// the shapes the gateway peeks at on every request, and a long one in
// Chinese (text that is not ASCII: its UTF-8 is checked rune by rune).
var benchBodies = map[string][]byte{
	"small": []byte(`{"model":"m1","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`),
	"large": []byte(`{"model":"m1","temperature":0,"stream":true,"stream_options":{"include_usage":true},"messages":[` +
		strings.Repeat(`{"role":"user","content":"`+strings.Repeat(`lorem ipsum \"dolor\" sit amet, `, 40)+`"},`, 20) +
		`{"role":"user","content":"end"}],"max_tokens":256,"top_p":0.9,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`),
	"cjk": []byte(`{"model":"m1","messages":[` +
		strings.Repeat(`{"role":"user","content":"`+strings.Repeat(`服务器繁忙，请稍后再试。“排队”与限流 (429) `, 20)+`"},`, 20) +
		`{"role":"user","content":"结束"}],"max_tokens":256}`),
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

// BenchmarkValidJSON is the scan without notes, as a backend's answer is
// checked (ValidObject, CheckAnswer): strings are not checked for UTF-8.
func BenchmarkValidJSON(b *testing.B) {
	for name, body := range benchBodies {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i++ {
				if !validJSON(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

package openai

import (
	"strconv"
	"strings"
	"testing"
)

var prefixSeeds = []string{
	`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
	`{"messages":[{"ROLE":"user","Content":[{"type":"text","text":"a"},{"type":"image_url"},{"text":"b"}]}]}`,
	`{"messages":[null,{"role":null,"content":null},{"role":"a","role":null}]}`,
	`{"messages":[{"role":5}]}`, `{"messages":[1]}`, `{"messages":{}}`, `{"messages":null,"prompt":"x"}`,
	`{"messages":[],"prompt":["abc","d"]}`, `{"prompt":[null]}`, `{"prompt":[7]}`, `{"prompt":[]}`,
	`{"messages":[{"role":"u","content":"x"}],"messages":[{"content":"y"}]}`,
	`{"me\u017f\u017fages":[{"r\u006fle":"\u00e9\ud800","content":"\u2028\"x"}]}`,
	"{\"messages\":[{\"role\":\"\xff\",\"content\":\"\xfe\"}]}",
	`{"messages":[{"role":"u","content":"x"},{"role":7}]}`, `null`, `[]`, `"x"`, `{`,
	`{"instructions":"sys","input":"hello"}`, `{"instructions":["a"],"input":[{"type":"message","role":"user","content":"x"},{"type":"function_call_output","output":"o"},null]}`,
	`{"input":[{"role":"user","content":[{"type":"input_text","text":"q"}]},{"role":1}]}`,
	`{"Instructions":null,"INPUT":[{"type":null,"role":"","content":"c"}],"input":"last"}`,
}

// FuzzPrefixKeyMatchesTree holds the in-place keys to the decode into
// structs they replaced (prefixtree_test.go): the same key for every body
// and budget, so prefix_affinity maps no request elsewhere.
func FuzzPrefixKeyMatchesTree(f *testing.F) {
	for _, s := range prefixSeeds {
		f.Add([]byte(s), 0)
		f.Add([]byte(s), 5)
	}
	f.Fuzz(func(t *testing.T, body []byte, maxChars int) {
		for _, n := range []int{maxChars % 4096, 0, 1, 3, 17, 2048} {
			if got, want := PrefixKey(body, n), prefixKeyTree(body, n); got != want {
				t.Fatalf("PrefixKey(%q, %d) = %x, the decode gave %x", body, n, got, want)
			}
			if got, want := ResponsesPrefixKey(body, n), responsesPrefixKeyTree(body, n); got != want {
				t.Fatalf("ResponsesPrefixKey(%q, %d) = %x, the decode gave %x", body, n, got, want)
			}
		}
	})
}

// manyMessages is a chat body of n short messages (n=250k: 7.5 MB).
func manyMessages(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"m","messages":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"role":"user","content":"message ` + strconv.Itoa(i%1000) + `"}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// manyItems is a Responses body of n short input items.
func manyItems(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"m","instructions":"be brief","input":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"message","role":"user","content":"item ` + strconv.Itoa(i%1000) + `"}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// TestPrefixKeyAllocationsBounded: the key of a huge prompt costs what its
// first prefix_chars bytes cost. The decode allocated for every message
// (250k messages: over 250k allocations, 33 MB).
func TestPrefixKeyAllocationsBounded(t *testing.T) {
	chat, items := manyMessages(250_000), manyItems(250_000)
	if k := PrefixKey(chat, 2048); k == 0 || k != PrefixKey(manyMessages(200), 2048) {
		t.Fatalf("key %x of 250k messages differs from that of their first 200", k)
	}
	if k := ResponsesPrefixKey(items, 2048); k == 0 || k != ResponsesPrefixKey(manyItems(200), 2048) {
		t.Fatalf("key %x of 250k items differs from that of their first 200", k)
	}
	for name, f := range map[string]func(){
		"chat":      func() { PrefixKey(chat, 2048) },
		"responses": func() { ResponsesPrefixKey(items, 2048) },
	} {
		if a := testing.AllocsPerRun(3, f); a > 400 {
			t.Errorf("%s: %.0f allocations for 250k messages, want at most 400", name, a)
		}
	}
}

func BenchmarkPrefixKey(b *testing.B) {
	system := strings.Repeat("You are a careful assistant. ", 50)
	small := []byte(`{"model":"m","temperature":0.2,"messages":[{"role":"system","content":"` + system +
		`"},{"role":"user","content":"` + strings.Repeat("What is the capital of France? ", 20) + `"}]}`)
	for _, c := range []struct {
		name string
		body []byte
		f    func([]byte, int) uint64
	}{
		{"chat2KB", small, PrefixKey},
		{"chat2KB/tree", small, prefixKeyTree},
		{"chat250k", manyMessages(250_000), PrefixKey},
		{"chat250k/tree", manyMessages(250_000), prefixKeyTree},
		{"responses250k", manyItems(250_000), ResponsesPrefixKey},
		{"responses250k/tree", manyItems(250_000), responsesPrefixKeyTree},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				c.f(c.body, 2048)
			}
		})
	}
}

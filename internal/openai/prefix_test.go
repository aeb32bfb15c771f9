package openai

import (
	"strings"
	"testing"
)

func TestPrefixKeySameHeadDifferentTail(t *testing.T) {
	system := strings.Repeat("You are a careful assistant. ", 100) // > 2048 bytes
	a := `{"model":"m","messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"question one"}]}`
	b := `{"model":"m","messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"another question"}]}`
	ka, kb := PrefixKey([]byte(a), 2048), PrefixKey([]byte(b), 2048)
	if ka == 0 || ka != kb {
		t.Fatalf("tail past maxChars changed the key: %x vs %x", ka, kb)
	}
	// Within maxChars the tail counts.
	if PrefixKey([]byte(a), 0) == PrefixKey([]byte(b), 0) {
		t.Fatal("unlimited keys of different prompts are equal")
	}
	short := `{"messages":[{"role":"system","content":"short"},{"role":"user","content":"q1"}]}`
	short2 := `{"messages":[{"role":"system","content":"short"},{"role":"user","content":"q2"}]}`
	if PrefixKey([]byte(short), 2048) == PrefixKey([]byte(short2), 2048) {
		t.Fatal("different prompts within maxChars share a key")
	}
}

func TestPrefixKeyKeyOrderAndWhitespace(t *testing.T) {
	a := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi there"}]}`
	b := "{ \"messages\" : [ { \"content\" : \"hi there\" ,\n \"role\" : \"user\" } ], \"stream\":false, \"model\":\"other\" }"
	if ka, kb := PrefixKey([]byte(a), 100), PrefixKey([]byte(b), 100); ka == 0 || ka != kb {
		t.Fatalf("key depends on layout: %x vs %x", ka, kb)
	}
}

func TestPrefixKeyContentShapes(t *testing.T) {
	str := `{"messages":[{"role":"user","content":"hello world"}]}`
	arr := `{"messages":[{"role":"user","content":[{"type":"text","text":"hello world"}]}]}`
	if ka, kb := PrefixKey([]byte(str), 0), PrefixKey([]byte(arr), 0); ka == 0 || ka != kb {
		t.Fatalf("string and one-part array content differ: %x vs %x", ka, kb)
	}
	// Roles count, and message boundaries count.
	u := PrefixKey([]byte(`{"messages":[{"role":"user","content":"x"}]}`), 0)
	s := PrefixKey([]byte(`{"messages":[{"role":"system","content":"x"}]}`), 0)
	if u == s {
		t.Fatal("role ignored")
	}
	one := PrefixKey([]byte(`{"messages":[{"role":"user","content":"ab"}]}`), 0)
	two := PrefixKey([]byte(`{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`), 0)
	if one == two {
		t.Fatal("message boundary ignored")
	}
}

func TestPrefixKeyCompletions(t *testing.T) {
	s := PrefixKey([]byte(`{"model":"m","prompt":"once upon a time"}`), 0)
	a := PrefixKey([]byte(`{"model":"m","prompt":["once upon a time","ignored"]}`), 0)
	if s == 0 || s != a {
		t.Fatalf("string vs array prompt: %x vs %x", s, a)
	}
	if PrefixKey([]byte(`{"prompt":"once upon a time, a king"}`), 16) != PrefixKey([]byte(`{"prompt":"once upon a time, a queen"}`), 16) {
		t.Fatal("tail past maxChars changed a completions key")
	}
}

func TestPrefixKeyNoPrompt(t *testing.T) {
	for _, body := range []string{
		``, `not json`, `[]`, `{}`, `{"model":"m"}`, `{"messages":[]}`, `{"prompt":""}`,
		`{"prompt":[1,2,3]}`, `{"prompt":[]}`, `{"messages":"x"}`,
	} {
		if k := PrefixKey([]byte(body), 2048); k != 0 {
			t.Errorf("PrefixKey(%q) = %x, want 0", body, k)
		}
	}
}

func FuzzPrefixKey(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"}]}`), 8)
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url"}]}]}`), 0)
	f.Add([]byte(`{"prompt":["a","b"]}`), 3)
	f.Add([]byte(`{"prompt":"héllo wörld"}`), 2)
	f.Fuzz(func(t *testing.T, body []byte, maxChars int) {
		k := PrefixKey(body, maxChars)
		if k2 := PrefixKey(body, maxChars); k2 != k {
			t.Fatalf("not deterministic: %x vs %x", k, k2)
		}
		if maxChars > 0 && k != 0 {
			// A longer limit can only see more; a key of 0 stays 0.
			if PrefixKey(body, maxChars+1) == 0 {
				t.Fatal("longer limit lost the prompt")
			}
		}
	})
}

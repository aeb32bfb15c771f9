package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

func TestKeyNormalises(t *testing.T) {
	a := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"stream":true,"user":"u1"}`)
	b := []byte(`{ "temperature" : 0.0, "messages" : [ {"content":"hi", "role":"user"} ],
	  "stream_options":{"include_usage":true}, "model":"m" }`)
	ka, ca, err := Key(a, sc("m", "t1", false))
	if err != nil || !ca {
		t.Fatalf("a: %v %v", ca, err)
	}
	kb, cb, err := Key(b, sc("m", "t1", false))
	if err != nil || !cb {
		t.Fatalf("b: %v %v", cb, err)
	}
	if ka != kb {
		t.Fatalf("keys differ for equivalent requests")
	}
	if k, _, _ := Key(a, sc("m", "t2", false)); k == ka {
		t.Fatal("tenants share a key without shared")
	}
	s1, _, _ := Key(a, sc("m", "t1", true))
	s2, _, _ := Key(a, sc("m", "t2", true))
	if s1 != s2 || s1 == ka {
		t.Fatal("shared keys must ignore the tenant and differ from scoped ones")
	}
	if k, _, _ := Key(a, sc("other", "t1", false)); k == ka {
		t.Fatal("model must be part of the key")
	}
	chat, _, _ := Key(a, Scope{Path: "/v1/chat/completions", Model: "m", Tenant: "t1"})
	emb, _, _ := Key(a, Scope{Path: "/v1/embeddings", Model: "m", Tenant: "t1"})
	if chat == emb {
		t.Fatal("the endpoint path must be part of the key")
	}
	c := bytes.Replace(a, []byte(`"hi"`), []byte(`"ho"`), 1)
	if k, _, _ := Key(c, sc("m", "t1", false)); k == ka {
		t.Fatal("content must be part of the key")
	}
}

func TestKeyCacheable(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"temperature":0}`, true},
		{`{"temperature":0.7,"seed":1}`, true},
		{`{"seed":42}`, true},
		{`{"seed":null}`, false},
		{`{}`, false},
		{`{"temperature":0.2}`, false},
		{`{"temperature":0,"n":1}`, true},
		{`{"temperature":0,"n":2}`, false},
		{`{"temperature":"0"}`, false},
	} {
		_, got, err := Key([]byte(tc.body), sc("m", "t", false))
		if err != nil || got != tc.want {
			t.Errorf("%s: cacheable=%v err=%v, want %v", tc.body, got, err, tc.want)
		}
	}
	for _, bad := range []string{``, `[]`, `null`, `{"a":1} x`, `{`} {
		if _, c, err := Key([]byte(bad), sc("m", "t", false)); err == nil || c {
			t.Errorf("%q: want error", bad)
		}
	}
}

func FuzzKey(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}`))
	f.Add([]byte(`{"b":[1,2.5,{"z":null,"a":true}],"a":"<&>","seed":123456789012345678901}`))
	f.Add([]byte(`{"x":-0.0,"y":1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		key, _, err := Key(body, sc("m", "t", false))
		if err != nil {
			return
		}
		// Same value, other whitespace and key order.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("Key accepted what Decode rejects: %v", err)
		}
		re, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, re, " ", "\t"); err != nil {
			t.Fatal(err)
		}
		for _, alt := range [][]byte{re, ind.Bytes()} {
			k, _, err := Key(alt, sc("m", "t", false))
			if err != nil || k != key {
				t.Fatalf("key changed for %s -> %s (%v)", body, alt, err)
			}
		}
	})
}

func TestMemoMatchesKey(t *testing.T) {
	m, err := NewMemo(100)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"model":"m","temperature":0,"messages":[{"role":"user","content":"x"}]}`)
	other := []byte(`{ "messages":[{"content":"x","role":"user"}],"temperature":0, "model":"m"}`)
	for round := 0; round < 2; round++ { // the second round is answered from the memo
		for _, c := range []struct {
			body   []byte
			tenant string
			shared bool
		}{{body, "a", false}, {body, "b", false}, {other, "a", false}, {body, "a", true}, {other, "b", true}} {
			p, err := m.Parse(c.body)
			if err != nil || p.Peek.Model != "m" || !p.Peek.Deterministic {
				t.Fatalf("parse: %+v %v", p, err)
			}
			if round == 1 && p.digest == nil {
				t.Fatal("a body keyed before is not answered from the memo")
			}
			want, _, err := Key(c.body, sc("m", c.tenant, c.shared))
			got, err2 := m.Key(p, c.body, sc("m", c.tenant, c.shared))
			if err != nil || err2 != nil || got != want {
				t.Fatalf("round %d %s/%v: memo %s (%v), Key %s (%v)", round, c.tenant, c.shared, got, err2, want, err)
			}
		}
	}
	// The same body again in the same scope (a repeated request, a cache
	// hit) is answered the key derived last time, and it is the same key.
	s := sc("m", "c", false)
	want, _, _ := Key(body, s)
	p, _ := m.Parse(body)
	if got, err := m.Key(p, body, s); err != nil || got != want {
		t.Fatalf("memo %s (%v), Key %s", got, err, want)
	}
	p, _ = m.Parse(body)
	if p.last == nil || p.last.key != want || p.last.scope != s {
		t.Fatalf("the key is not remembered in its scope: %+v", p.last)
	}
	if got, err := m.Key(p, body, s); err != nil || got != want {
		t.Fatalf("remembered key %s (%v), Key %s", got, err, want)
	}
	if got, _ := m.Key(p, body, sc("m", "d", false)); got == want {
		t.Fatal("another tenant's scope was answered the remembered key")
	}
	if _, err := m.Parse([]byte(`[1]`)); err == nil {
		t.Fatal("a non-object body must be an error")
	}
}

// TestMemoBounded: the memo keeps at most the bodies it was made for, and
// a body keyed last is answered from it even when it was full.
func TestMemoBounded(t *testing.T) {
	const n = 40
	m, err := NewMemo(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		body := []byte(fmt.Sprintf(`{"model":"m","temperature":0,"messages":[{"role":"user","content":"%d"}]}`, i))
		p, err := m.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Key(p, body, sc("m", "t", false)); err != nil {
			t.Fatal(err)
		}
		if p, _ := m.Parse(body); p.digest == nil {
			t.Fatalf("body %d, keyed just now, is not answered from the memo", i)
		}
	}
	kept := 0
	for i := range m.slots {
		if m.slots[i].Load() != nil {
			kept++
		}
	}
	if kept > n || kept == 0 || m.Capacity() > n {
		t.Fatalf("the memo keeps %d bodies (capacity %d), made for %d", kept, m.Capacity(), n)
	}
	// What its metrics read: every body kept or dropped for a new one.
	if m.Len() != kept || m.Evictions() != uint64(500-kept) {
		t.Fatalf("Len %d, Evictions %d; kept %d of 500 bodies", m.Len(), m.Evictions(), kept)
	}
	// An entry answers only its own body's id, not another's that shares
	// the half its slots are chosen by.
	mine := bodyID{a: 7, b: 2}
	other := bodyID{a: 7, b: 3} // the same slots
	m.set(&Parsed{id: mine})
	if m.get(other) != nil || m.get(mine) == nil {
		t.Fatal("an entry answered another body's id, or not its own")
	}
	if _, err := NewMemo(0); err == nil {
		t.Fatal("a memo of no bodies must be refused")
	}
}

// FuzzMemo: the memo's answers equal a fresh parse and Key, first time and
// from the memo.
func FuzzMemo(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}`))
	f.Add([]byte(`{"model":"m","seed":1,"n":1,"stream":true}`))
	f.Add([]byte(`[]`))
	m, err := NewMemo(64)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, werr := openai.ParseRequest(body)
		for range 2 {
			p, err := m.Parse(body)
			if (err != nil) != (werr != nil) {
				t.Fatalf("memo parse error %v, ParseRequest %v", err, werr)
			}
			if err != nil {
				return
			}
			if p.Peek != want {
				t.Fatalf("memo peek %+v, ParseRequest %+v", p.Peek, want)
			}
			k, kerr := m.Key(p, body, sc("m", "t", false))
			wk, _, wkerr := Key(body, sc("m", "t", false))
			if (kerr != nil) != (wkerr != nil) || k != wk {
				t.Fatalf("memo key %q (%v), Key %q (%v)", k, kerr, wk, wkerr)
			}
		}
	})
}

// sc is a Scope on the chat endpoint.
func sc(model, tenant string, shared bool) Scope {
	return Scope{Path: "/v1/chat/completions", Model: model, Tenant: tenant, Shared: shared}
}

package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// identityConfig writes a config with the API key sk-acme of tenant acme,
// bearer JWTs from is, and extra (YAML lines at the top level, or under
// auth.jwt when they start with four spaces).
func identityConfig(t *testing.T, path string, is *jwttest.Issuer, backend, queue, jwtExtra, extra string) {
	t.Helper()
	src := fmt.Sprintf(`listen: 127.0.0.1:0
`+noProbes+`log: {access: false}
queue: %s
auth:
  keys:
    - {key: sk-acme, tenant: acme}
  jwt:
    jwks_url: %s
    issuer: https://idp.test/
    audience: sluice
%s%s
models:
  - name: m
    backends:
      - url: %s
`, queue, is.URL(), jwtExtra, extra, backend)
	writeFile(t, path, src)
}

func tokenFor(t *testing.T, is *jwttest.Issuer, sub string) string {
	return "Bearer " + is.RS256(t, jwt.MapClaims{"iss": "https://idp.test/", "aud": "sluice", "sub": sub,
		"exp": time.Now().Add(time.Hour).Unix()})
}

// A token whose tenant claim names an API key's tenant ("acme") is not
// that tenant: it is "jwt:acme", and finds none of the key's files,
// batches, async jobs (by id or Idempotency-Key), stored responses or
// cached answers (404 as for an
// id nobody made, as OpenAI answers, never 403), nor can it delete or
// cancel them. Before, the claim alone read 3 of 3 files, their content,
// the batch, the job, the response and the cached answer. Listing the
// claim in auth.jwt.shared_tenants shares the tenant on purpose.
func TestTokenClaimDoesNotReachAKeysTenant(t *testing.T) {
	is := jwttest.New(t)
	be := simBackend(t)
	path, queue := filepath.Join(t.TempDir(), "sluice.yaml"), "{data_dir: "+t.TempDir()+"}"
	identityConfig(t, path, is, be.URL, queue, "", "")
	a := newApp(t, path)
	defer a.release()
	url, _ := serveApp(t, a)
	key, tok := "Bearer sk-acme", tokenFor(t, is, "acme")

	var files []string
	for i := range 3 {
		var form bytes.Buffer
		mw := multipart.NewWriter(&form)
		mw.WriteField("purpose", "batch")
		fw, _ := mw.CreateFormFile("file", "in.jsonl")
		fmt.Fprintf(fw, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"q"}],"max_tokens":2}}`+"\n", i)
		mw.Close()
		code, _, b := do(t, http.MethodPost, url+"/v1/files", mw.FormDataContentType(), &form, "Authorization", key)
		var f struct{ ID string }
		if code != 200 || json.Unmarshal(b, &f) != nil {
			t.Fatalf("upload: %d %s", code, b)
		}
		files = append(files, f.ID)
	}
	code, _, b := do(t, http.MethodPost, url+"/v1/batches", "application/json",
		strings.NewReader(`{"input_file_id":"`+files[0]+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`), "Authorization", key)
	var batch struct{ ID string }
	if code != 200 || json.Unmarshal(b, &batch) != nil {
		t.Fatalf("batch: %d %s", code, b)
	}
	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"later"}],"max_tokens":2}`), "Authorization", key,
		"Prefer", "respond-async", "Idempotency-Key", "k1")
	if code != http.StatusAccepted {
		t.Fatalf("async: %d %s", code, b)
	}
	job := h.Get("Location")
	code, _, b = do(t, http.MethodPost, url+"/v1/responses", "application/json",
		strings.NewReader(`{"model":"m","input":"hello","max_output_tokens":2}`), "Authorization", key)
	var resp struct{ ID string }
	if code != 200 || json.Unmarshal(b, &resp) != nil {
		t.Fatalf("response: %d %s", code, b)
	}
	det := `{"model":"m","temperature":0,"messages":[{"role":"user","content":"cached for acme"}],"max_tokens":2}`
	if _, h, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(det), "Authorization", key); h.Get("X-Cache") != "MISS" {
		t.Fatalf("first deterministic request: X-Cache %q", h.Get("X-Cache"))
	}

	// Every route by id answers the token 404, the list endpoints an empty page.
	reads := 0
	for _, f := range files {
		for _, r := range [][2]string{{"GET", "/v1/files/" + f}, {"GET", "/v1/files/" + f + "/content"}, {"DELETE", "/v1/files/" + f}} {
			if code, _, b := do(t, r[0], url+r[1], "", nil, "Authorization", tok); code != 404 {
				reads++
				t.Errorf("token %s %s: %d %s", r[0], r[1], code, b)
			}
		}
	}
	for _, r := range [][2]string{{"GET", "/v1/batches/" + batch.ID}, {"POST", "/v1/batches/" + batch.ID + "/cancel"},
		{"GET", job}, {"DELETE", job}, {"GET", "/v1/responses/" + resp.ID}} {
		if code, _, b := do(t, r[0], url+r[1], "", nil, "Authorization", tok); code != 404 {
			reads++
			t.Errorf("token %s %s: %d %s", r[0], r[1], code, b)
		}
	}
	// The same Idempotency-Key is the token's own job, not the key's.
	code, h, b = do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"later"}],"max_tokens":2}`), "Authorization", tok,
		"Prefer", "respond-async", "Idempotency-Key", "k1")
	if code != http.StatusAccepted || h.Get("Location") == job {
		reads++
		t.Errorf("token's async request with the key's Idempotency-Key: %d %s, Location %s (the key's: %s)", code, b, h.Get("Location"), job)
	}
	for _, list := range []string{"/v1/files", "/v1/batches"} {
		code, _, b := do(t, http.MethodGet, url+list, "", nil, "Authorization", tok)
		var page struct{ Data []any }
		if code != 200 || json.Unmarshal(b, &page) != nil || len(page.Data) != 0 {
			reads++
			t.Errorf("token GET %s: %d, %d of acme's objects listed", list, code, len(page.Data))
		}
	}
	if _, h, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(det), "Authorization", tok); h.Get("X-Cache") == "HIT" {
		reads++
		t.Error("the token was answered from acme's cache")
	}
	if reads > 0 {
		t.Fatalf("a token with the claim sub=acme reached %d of acme's objects", reads)
	}
	// The key still has all of it: nothing the token tried deleted or cancelled anything.
	code, _, b = do(t, http.MethodGet, url+"/v1/files", "", nil, "Authorization", key)
	var page struct{ Data []any }
	if code != 200 || json.Unmarshal(b, &page) != nil || len(page.Data) < 3 {
		t.Fatalf("the key's files after the token's deletes: %d %s", code, b)
	}

	// Shared on purpose: the claim is the key's tenant, its files included.
	identityConfig(t, path, is, be.URL, queue, "    shared_tenants: [acme]\n", "")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files[1:] {
		if code, _, b := do(t, http.MethodGet, url+"/v1/files/"+f, "", nil, "Authorization", tok); code != 200 {
			t.Fatalf("shared tenant: token GET file %d %s", code, b)
		}
	}
	if code, _, b := do(t, http.MethodGet, url+"/v1/files/"+files[1], "", nil, "Authorization", tokenFor(t, is, "acme2")); code != 404 {
		t.Fatalf("a claim not listed in shared_tenants: %d %s", code, b)
	}
}

// A token tenant has rate limit buckets of its own: the key's tenant
// spending its per_tenant burst (1r/m burst=1: two at once) leaves the token with the claim of the
// same name its whole burst (before: 429 at once, the bucket was
// acme's). A rule written for the tenant's name in rate_limits.tenants
// still applies to the token tenant, in its own bucket.
func TestTokenTenantHasItsOwnBuckets(t *testing.T) {
	is := jwttest.New(t)
	be, _ := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	identityConfig(t, path, is, be.URL, "{enabled: false}", "",
		"rate_limits:\n  per_tenant: {requests: \"1r/m burst=1 nodelay\"}\n  tenants:\n    ops: {requests: \"1r/m\"}\n")
	a := newApp(t, path)
	defer a.release()
	url, _ := serveApp(t, a)
	send := func(bearer string) int {
		code, _, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[]}`), "Authorization", bearer)
		return code
	}
	var got []int
	for range 3 {
		got = append(got, send("Bearer sk-acme"))
	}
	tok := tokenFor(t, is, "acme")
	for range 3 {
		got = append(got, send(tok))
	}
	ops := tokenFor(t, is, "ops")
	got = append(got, send(ops), send(ops))
	if want := []int{200, 200, 429, 200, 200, 429, 200, 429}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("key acme x3, token acme x3, token ops x2: %v, want %v", got, want)
	}
}

// Across replicas sharing one Redis (rate limits, cache L2, Responses
// ids), a token tenant is still apart from the key tenant of its claim's
// name: replica B answers the token 404 for the response the key made
// through replica A (the owner Redis holds is "acme", the token is
// "jwt:acme"), a MISS for the key's answer B finds in Redis, and a
// bucket of its own once the key's (in Redis: through A and B) is spent.
// The key through B gets the response and the HIT. Before: 200, HIT.
func TestTokenTenantApartAcrossReplicasOnRedis(t *testing.T) {
	rd := redistest.Start(t)
	is := jwttest.New(t)
	be := simBackend(t)
	redis := "['" + rd.Addr + "'], timeout: 10s"
	extra := "rate_limits: {store: redis, redis: {addrs: " + redis + "}, per_tenant: {requests: \"1r/m burst=19 nodelay\"}}\n" +
		"cache: {redis: {addrs: " + redis + "}}\n"
	var urls []string
	for range 2 {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		identityConfig(t, path, is, be.URL, "{enabled: false}", "", extra)
		a := newApp(t, path)
		defer a.release()
		url, _ := serveApp(t, a)
		urls = append(urls, url)
	}
	key, tok := "Bearer sk-acme", tokenFor(t, is, "acme")
	code, _, b := do(t, http.MethodPost, urls[0]+"/v1/responses", "application/json",
		strings.NewReader(`{"model":"m","input":"hello","max_output_tokens":2}`), "Authorization", key)
	var resp struct{ ID string }
	if code != 200 || json.Unmarshal(b, &resp) != nil {
		t.Fatalf("response: %d %s", code, b)
	}
	det := `{"model":"m","temperature":0,"messages":[{"role":"user","content":"cached on redis"}],"max_tokens":2}`
	chat := func(url, bearer string) (int, string) {
		code, h, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(det), "Authorization", bearer)
		return code, h.Get("X-Cache")
	}
	if code, x := chat(urls[0], key); code != 200 || x != "MISS" {
		t.Fatalf("key's deterministic request on A: %d %q", code, x)
	}
	// The answer reaches Redis after the client has it: B serves the key
	// from it once it is there.
	eventually(t, "the key's answer from Redis on B", func() bool { _, x := chat(urls[1], key); return x == "HIT" })
	// A writes the response's owner to Redis after its answer, off its
	// path. Asked before the write lands, B probes the backends, finds it
	// and shows it to whoever names it (no owner recorded yet: as
	// documented), the token too; so the question waits for the owner
	// to be in Redis (its key as gateway.sharedOwners.key makes it).
	sum := sha256.Sum256([]byte(resp.ID))
	ownerKey := "sluice:resp:" + hex.EncodeToString(sum[:16])
	eventually(t, "A's owner of the response in Redis", func() bool {
		n, err := rd.Do("EXISTS", ownerKey)
		return err == nil && n == "1"
	})
	if code, _, b := do(t, http.MethodGet, urls[1]+"/v1/responses/"+resp.ID, "", nil, "Authorization", key); code != 200 {
		t.Fatalf("key on B, its response: %d %s", code, b)
	}
	if code, _, b := do(t, http.MethodGet, urls[1]+"/v1/responses/"+resp.ID, "", nil, "Authorization", tok); code != 404 {
		t.Errorf("token on B, the key's response: %d %s", code, b)
	}
	if code, x := chat(urls[1], tok); code != 200 || x == "HIT" {
		t.Errorf("token on B, the key's cached answer: %d X-Cache %q", code, x)
	}
	// Spend the key's bucket (20 in Redis, both replicas counting).
	for i := 0; ; i++ {
		if code, _ := chat(urls[i%2], key); code == 429 {
			break
		}
		if i > 20 {
			t.Fatal("the key's 20 requests a minute were never spent")
		}
	}
	if code, _ := chat(urls[1], tok); code != 200 {
		t.Errorf("token on B once the key's bucket is spent: %d, want its own bucket", code)
	}
}

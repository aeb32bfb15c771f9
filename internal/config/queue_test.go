package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// queue.max_store_bytes defaults to a bound (10GiB), accepts an explicit
// 0 (unbounded), and refuses a negative one or one that could not hold
// two uploads, naming the key.
func TestQueueMaxStoreBytes(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.MaxStoreBytes != 10<<30 {
		t.Fatalf("default queue.max_store_bytes = %d, want 10GiB", c.Queue.MaxStoreBytes)
	}
	if c, err = Parse([]byte("queue: {max_store_bytes: 0}\n" + minimal)); err != nil || c.Queue.MaxStoreBytes != 0 {
		t.Fatalf("explicit 0: %v, %d; want accepted as unbounded", err, c.Queue.MaxStoreBytes)
	}
	for _, v := range []string{"-1", "300MiB"} {
		_, err := Parse([]byte("queue: {max_store_bytes: " + v + "}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "queue.max_store_bytes") {
			t.Errorf("max_store_bytes %s: %v; want an error naming queue.max_store_bytes", v, err)
		}
	}
}

// queue.file_read_idle defaults to 30s, takes a duration, and refuses
// zero or a negative one, naming the key.
func TestQueueFileReadIdle(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.FileReadIdle.D() != 30*time.Second {
		t.Fatalf("default queue.file_read_idle = %s, want 30s", c.Queue.FileReadIdle.D())
	}
	if c, err = Parse([]byte("queue: {file_read_idle: 2m}\n" + minimal)); err != nil || c.Queue.FileReadIdle.D() != 2*time.Minute {
		t.Fatalf("file_read_idle 2m: %v, %s", err, c.Queue.FileReadIdle.D())
	}
	for _, v := range []string{"0s", "-1s"} {
		_, err := Parse([]byte("queue: {file_read_idle: " + v + "}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "queue.file_read_idle") {
			t.Errorf("file_read_idle %s: %v; want an error naming queue.file_read_idle", v, err)
		}
	}
}

// queue.orphan_chunk_age defaults to 1h (jobs.DefaultOrphanChunkAge),
// takes a duration, and refuses one under a minute, naming the key.
func TestQueueOrphanChunkAge(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.OrphanChunkAge.D() != time.Hour {
		t.Fatalf("default queue.orphan_chunk_age = %s, want 1h", c.Queue.OrphanChunkAge.D())
	}
	if c, err = Parse([]byte("queue: {orphan_chunk_age: 10m}\n" + minimal)); err != nil || c.Queue.OrphanChunkAge.D() != 10*time.Minute {
		t.Fatalf("orphan_chunk_age 10m: %v, %s", err, c.Queue.OrphanChunkAge.D())
	}
	for _, v := range []string{"0s", "-1s", "30s"} {
		_, err := Parse([]byte("queue: {orphan_chunk_age: " + v + "}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "queue.orphan_chunk_age") {
			t.Errorf("orphan_chunk_age %s: %v; want an error naming queue.orphan_chunk_age", v, err)
		}
	}
}

// queue.batch_webhooks takes absolute http(s) URLs with a webhook_secret,
// and refuses one without the secret, a relative or other-scheme URL, or
// one listed twice, naming the key.
func TestQueueBatchWebhooks(t *testing.T) {
	ok := "queue: {webhook_secret: s, batch_webhooks: [https://hooks.example.com/openai, http://h.example:9000/x]}\n"
	c, err := Parse([]byte(ok + minimal))
	if err != nil || len(c.Queue.BatchWebhooks) != 2 {
		t.Fatalf("two endpoints: %v, %v", err, c.Queue.BatchWebhooks)
	}
	for _, v := range []string{
		"queue: {batch_webhooks: [https://hooks.example.com/openai]}",
		"queue: {webhook_secret: s, batch_webhooks: [hooks.example.com/openai]}",
		"queue: {webhook_secret: s, batch_webhooks: [ftp://hooks.example.com/]}",
		"queue: {webhook_secret: s, batch_webhooks: [https://a.example/, https://a.example/]}",
	} {
		_, err := Parse([]byte(v + "\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "queue.batch_webhooks") {
			t.Errorf("%s: %v; want an error naming queue.batch_webhooks", v, err)
		}
	}
}

// An entry of queue.batch_webhooks is a URL (every tenant's events, as
// before tenants existed) or {url, tenants}; mixed in one list, they
// decode to the endpoints and their tenants.
func TestQueueBatchWebhooksNameTheirTenants(t *testing.T) {
	src := `queue:
  webhook_secret: s
  batch_webhooks:
    - https://ops.example.com/all
    - url: https://acme.example.com/openai
      tenants: [acme, acme-eu]
    - {url: "https://globex.example.com/hook"}
` + minimal
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []BatchWebhook{{URL: "https://ops.example.com/all"},
		{URL: "https://acme.example.com/openai", Tenants: []string{"acme", "acme-eu"}}, {URL: "https://globex.example.com/hook"}}
	if !reflect.DeepEqual(c.Queue.BatchWebhooks, want) {
		t.Fatalf("batch_webhooks = %#v, want %#v", c.Queue.BatchWebhooks, want)
	}
}

// A tenants list that names nothing, an empty or repeated tenant, an
// unknown key in an entry, or an entry that is a list, is refused with
// its key path and line.
func TestQueueBatchWebhookTenantsRefused(t *testing.T) {
	for _, c := range []struct{ entry, key string }{
		{"{url: \"https://a.example/\", tenants: []}", "line 5: queue.batch_webhooks[1].tenants: lists no tenant"},
		{"{url: \"https://a.example/\", tenants: [acme, acme]}", "line 5: queue.batch_webhooks[1].tenants[1]: \"acme\" listed twice"},
		{"{url: \"https://a.example/\", tenants: [\"\"]}", "line 5: queue.batch_webhooks[1].tenants[0]: want a tenant name"},
		{"{url: \"https://a.example/\", tenant: [acme]}", "line 5: queue.batch_webhooks[1].tenant"},
		{"{tenants: [acme]}", "queue.batch_webhooks[1].url: want the endpoint's URL"},
		{"{url: \"https://ops.example/\", tenants: [acme]}", "queue.batch_webhooks[1].url: listed twice"},
		{"[https://a.example/]", "line 5: queue.batch_webhooks[1]: want a section of keys"},
	} {
		src := "queue:\n  webhook_secret: s\n  batch_webhooks:\n    - https://ops.example/\n    - " + c.entry + "\n" + minimal
		_, err := Parse([]byte(src))
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: %v; want an error with %q", c.entry, err, c.key)
		}
	}
}

// A queue.url the NATS client cannot parse (a password holding '/', '?'
// or '#' written raw) is refused naming the key, the URL redacted and what
// to do: before, `sluice check` said valid and the gateway retried the
// connect forever, each error quoting a piece of the password. The lists
// NATS takes (several URLs, a bare host:port) still pass.
func TestQueueURLThatDoesNotParse(t *testing.T) {
	for _, u := range []string{"nats://u:SEC/RET@127.0.0.1:4222", "nats://a:4222,nats://u:SEC#RET@b:4222", "u:SEC?RET@b:4222"} {
		_, err := Parse([]byte("queue: {url: \"" + u + "\"}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "queue.url") || !strings.Contains(err.Error(), "percent-encoded") ||
			strings.Contains(err.Error(), "SEC") || strings.Contains(err.Error(), "RET") {
			t.Errorf("queue.url %q: %v", u, err)
		}
	}
	for _, u := range []string{"nats://u:p%2Fw@a:4222,nats://b:4222", "a:4222, b:4222", "tls://u:pw@a:4222"} {
		if _, err := Parse([]byte("queue: {url: \"" + u + "\"}\n" + minimal)); err != nil {
			t.Errorf("queue.url %q refused: %v", u, err)
		}
	}
}

// A queue.url that parses but names no server (a scheme typo read as host
// "nats" with a path, another scheme, no host) is refused naming the key
// and the form wanted: before, `sluice check` called it valid and the
// gateway dialled nats:4222 forever, serving without its queue.
func TestQueueURLThatNamesNoServer(t *testing.T) {
	for _, u := range []string{"nats//a:4222", "nats:/a:4222", "http://a:4222", "nats://", "nats://a:4222/jobs", "a:4222,nats//b:4222"} {
		_, err := Parse([]byte("queue: {url: \"" + u + "\"}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "line 1: queue.url") || !strings.Contains(err.Error(), "nats://") {
			t.Errorf("queue.url %q: %v", u, err)
		}
	}
	for _, u := range []string{"nats://a", "nats://a:4222/", "ws://a:8080", "wss://u:pw@a", "[::1]:4222"} {
		if _, err := Parse([]byte("queue: {url: \"" + u + "\"}\n" + minimal)); err != nil {
			t.Errorf("queue.url %q refused: %v", u, err)
		}
	}
}

// queue.retention under the job stream's 2-minute duplicate window was
// accepted by the config and refused by nats-server at start (a raw
// "duplicates window can not be larger then max age", no key named): it
// is refused here, naming the key.
func TestQueueRetentionCoversTheDuplicateWindow(t *testing.T) {
	for _, v := range []string{"0s", "30s", "119s"} {
		_, err := Parse([]byte("queue: {retention: " + v + "}\n" + minimal))
		if err == nil || !strings.Contains(err.Error(), "queue.retention") || !strings.Contains(err.Error(), "2m") {
			t.Errorf("retention %s: %v; want an error naming queue.retention and its 2m floor", v, err)
		}
	}
	if c, err := Parse([]byte("queue: {retention: 2m}\n" + minimal)); err != nil || c.Queue.Retention.D() != 2*time.Minute {
		t.Fatalf("retention 2m: %v; want accepted", err)
	}
}

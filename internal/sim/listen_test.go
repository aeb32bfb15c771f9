package sim

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestListenAndServeN(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := fastConfig()
	urls, stop, err := ListenAndServeN(ctx, "127.0.0.1:0", 2, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if len(urls) != 2 || urls[0] == urls[1] {
		t.Fatalf("urls %v", urls)
	}
	texts := map[string]bool{}
	for _, u := range urls {
		if status, body := getRead(t, u+"/health"); status != 200 || string(body) != "ok" {
			t.Fatalf("%s/health: %d %s", u, status, body)
		}
		_, body := postRead(t, u+"/v1/completions", `{"prompt":"same prompt","max_tokens":8}`)
		texts[decode[textCompletion](t, body).Choices[0].Text] = true
	}
	if len(texts) != 2 {
		t.Errorf("servers share a seed: %v", texts)
	}

	cancel() // cancelling ctx stops the servers; stop then returns at once
	stop()
	if _, err := http.Get(urls[0] + "/health"); err == nil {
		t.Error("server still answering after stop")
	}
}

func TestListenAndServeNErrors(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1:x", "127.0.0.1:65535"} {
		if _, _, err := ListenAndServeN(t.Context(), addr, 2, Config{}, nil); err == nil {
			t.Errorf("%s: want an error", addr)
		}
	}
	// Each refusal says what is wrong with the port.
	for addr, want := range map[string]string{
		"127.0.0.1:99999": "the port must be a number from 0 to 65535",
		"127.0.0.1:x":     "the port must be a number from 0 to 65535",
		"127.0.0.1:65535": "2 servers on consecutive ports from 65535 would pass 65535",
	} {
		if _, _, err := ListenAndServeN(t.Context(), addr, 2, Config{}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", addr, err, want)
		}
	}
	// A port already taken fails the whole group.
	urls, stop, err := ListenAndServeN(t.Context(), "127.0.0.1:0", 1, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, _, err := ListenAndServeN(t.Context(), urls[0][len("http://"):], 1, Config{}, nil); err == nil {
		t.Error("listening on a taken port succeeded")
	}
}

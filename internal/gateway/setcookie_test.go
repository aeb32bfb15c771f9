package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// A backend's Set-Cookie is the gateway's upstream client's (a hosted
// API's or its CDN's: Cloudflare's __cf_bm is bound to the caller that
// got it, here the gateway's egress and, with api_key, its account), and
// the gateway never sends a client's Cookie upstream (isClientOnly), so
// the cookie cannot work for the client. The old code relayed it to the
// one client whose request made the call, on a 200 (JSON or stream) and
// on an error alike; coalesced followers and cache hits never got it.
// Now no client gets it.
func TestBackendCookiesReachNoClient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"json", 200, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`},
		{"stream", 200, `{"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":true}`},
		{"error", 400, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Add("Set-Cookie", "__cf_bm=upstream-account; path=/; HttpOnly")
				w.Header().Add("Set-Cookie2", "legacy=1")
				switch {
				case tc.status != 200:
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					io.WriteString(w, `{"error":{"message":"bad request","type":"invalid_request_error","code":null}}`)
				case tc.name == "stream":
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n")
				default:
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
				}
			}))
			defer be.Close()
			srv, _ := startGateway(t, testConfig(be.URL))
			resp := post(t, srv.URL+"/v1/chat/completions", tc.body)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if c := resp.Header.Values("Set-Cookie"); len(c) != 0 || resp.Header.Get("Set-Cookie2") != "" {
				t.Errorf("%s answer (%s) carried the backend's cookies: %v %q", tc.name, strconv.Itoa(tc.status), c, resp.Header.Get("Set-Cookie2"))
			}
		})
	}
}

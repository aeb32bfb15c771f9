package gateway

import (
	"strings"
	"testing"
	"time"
)

// A backend that closes its stream inside the final event, before the
// event's blank line: the relay adds the missing line ends. Relayed as
// they came, a client's SSE parser discarded the final [DONE] (the spec
// drops an event the stream ends inside), and the error event the
// gateway appends to a stream without [DONE] was joined to the open line:
// a chunk's JSON followed by "data: {...}" (the SDKs fail to decode it)
// or a comment that swallowed the whole error event.
func TestStreamEndedInsideAnEventIsTerminated(t *testing.T) {
	const first = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"
	const last = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}"
	for name, tc := range map[string]struct {
		tail, want string
		broken     bool // no [DONE]: an error event follows want
	}{
		"done, no line end": {"data: [DONE]", "data: [DONE]\n\n", false},
		"done, one \\n":     {"data: [DONE]\n", "data: [DONE]\n\n", false},
		"done, one \\r":     {"data: [DONE]\r", "data: [DONE]\r\n\n", false},
		"chunk, no done":    {last, last + "\n\n", true},
		"comment, no done":  {": keep-alive", ": keep-alive\n\n", true},
	} {
		t.Run(name, func(t *testing.T) {
			be, _ := rawBackend(t, "text/event-stream", first+tc.tail)
			srv, gw := startGateway(t, testConfig(be.URL))
			resp := post(t, srv.URL+"/v1/chat/completions", streamBody)
			body := readAll(t, resp)
			rest, ok := strings.CutPrefix(body, first+tc.want)
			if resp.StatusCode != 200 || !ok {
				t.Fatalf("status %d body %q, want %q first", resp.StatusCode, body, first+tc.want)
			}
			failures := gw.Runtime().Pools["m1"].Backends[0].Failures()
			if !tc.broken {
				if rest != "" || failures != 0 {
					t.Fatalf("after the [DONE]: %q, %d failures; want nothing", rest, failures)
				}
				return
			}
			data, ok := strings.CutPrefix(rest, "data: ")
			if !ok || !strings.HasSuffix(data, "\n\n") || strings.Count(data, "\n") != 2 {
				t.Fatalf("after the stream %q, want one error event of its own", rest)
			}
			if _, code, _ := apiErr(t, strings.TrimSpace(data)); code != "upstream_bad_response" || failures != 1 {
				t.Fatalf("error event code %q, %d failures; want upstream_bad_response, 1", code, failures)
			}
		})
	}
}

// The cache stores what was relayed, so a hit replays the [DONE] with its
// blank line too (it replayed the backend's open event for the TTL).
func TestCachedStreamEndedInsideAnEventIsTerminated(t *testing.T) {
	const first = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"
	be, calls := rawBackend(t, "text/event-stream", first+"data: [DONE]")
	url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	const body = `{"model":"m1","temperature":0,"stream":true,"messages":[{"role":"user","content":"same words"}]}`
	for i, want := range []string{"MISS", "HIT"} {
		status, h, got := sendRaw(t, url, body)
		if status != 200 || h.Get("X-Cache") != want || !strings.HasSuffix(got, "data: [DONE]\n\n") {
			t.Fatalf("request %d: status %d X-Cache %q body %q; want %s ending in a whole [DONE] event", i, status, h.Get("X-Cache"), got, want)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("backend called %d times, want 1", n)
	}
}

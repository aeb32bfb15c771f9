package gateway

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// headerShapes are request header maps as net/http's server hands them
// over (Host is not among them): wrk's hit, curl's, two in between, and
// the OpenAI Python SDK's.
var headerShapes = []struct {
	name string
	keys []string
}{
	{"wrk-2", []string{"Content-Type", "Content-Length"}},
	{"curl-4", []string{"User-Agent", "Accept", "Content-Type", "Content-Length"}},
	{"n6", []string{"User-Agent", "Accept", "Content-Type", "Content-Length", "Authorization", "X-Request-Id"}},
	{"n8", []string{"User-Agent", "Accept", "Accept-Encoding", "Connection", "Content-Type", "Content-Length", "Authorization", "X-Request-Id"}},
	{"n10", []string{"User-Agent", "Accept", "Accept-Encoding", "Connection", "Content-Type", "Content-Length", "Authorization", "X-Request-Id",
		"X-Stainless-Lang", "X-Stainless-Os"}},
	{"sdk-16", []string{"Accept", "Accept-Encoding", "Authorization", "Connection", "Content-Length", "Content-Type", "User-Agent",
		"X-Stainless-Arch", "X-Stainless-Async", "X-Stainless-Lang", "X-Stainless-Os", "X-Stainless-Package-Version",
		"X-Stainless-Retry-Count", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Read-Timeout"}},
}

func shapeHeader(keys []string) http.Header {
	h := make(http.Header)
	for i, k := range keys {
		h[k] = []string{"v" + strconv.Itoa(i)}
	}
	return h
}

var sinkHeaders requestHeaders

// BenchmarkRequestHeaders: the chain's header reads per request, by a
// lookup per header and by one pass, on each shape (count instructions
// with bench/callgrind-ops.sh ./internal/gateway/ "BenchmarkRequestHeaders/wrk-2/walk ...").
func BenchmarkRequestHeaders(b *testing.B) {
	for _, s := range headerShapes {
		h := shapeHeader(s.keys)
		for _, m := range []struct {
			name string
			read func(*requestHeaders, http.Header)
		}{{"lookup", (*requestHeaders).lookup}, {"walk", (*requestHeaders).walk}, {"chosen", (*requestHeaders).read}} {
			b.Run(s.name+"/"+m.name, func(b *testing.B) {
				for b.Loop() {
					sinkHeaders = requestHeaders{}
					m.read(&sinkHeaders, h)
				}
			})
		}
	}
}

// One pass and the lookups read the same values from any header map:
// every header the chain reads, present or not, with one value, several
// or none, among the shapes' other headers.
func TestRequestHeadersWalkMatchesLookups(t *testing.T) {
	read := []string{headerRequestID, "Authorization", headerPriority, headerMaxWait, headerProgress, "Cache-Control", headerPrefer, JobTenantHeader, "User-Agent"}
	for _, s := range headerShapes {
		for mask := 0; mask < 1<<len(read); mask++ {
			h := shapeHeader(s.keys)
			for i, k := range read {
				switch {
				case mask&(1<<i) == 0:
					delete(h, k)
				case (mask>>i)%3 == 0:
					h[k] = []string{}
				default:
					h[k] = []string{k + "-1", k + "-2"}
				}
			}
			var got, want requestHeaders
			got.walk(h)
			want.lookup(h)
			if got.requestID != want.requestID || got.authorization != want.authorization || got.priority != want.priority ||
				got.maxWait != want.maxWait || got.progress != want.progress || got.cacheControl != want.cacheControl ||
				got.jobTenant != want.jobTenant || got.userAgent != want.userAgent || len(got.prefer) != len(want.prefer) || (got.prefer == nil) != (want.prefer == nil) {
				t.Fatalf("%s, mask %b: walk %+v, lookups %+v", s.name, mask, got, want)
			}
		}
	}
}

// readControlHeaders: no control header reads as none (nil and empty
// Prefer alike), and each one alone is still read and validated.
func TestReadControlHeaders(t *testing.T) {
	for _, c := range []struct {
		maxWait, progress string
		prefer            []string
		want              controlHeaders
		bad               bool
	}{
		{}, {prefer: []string{}},
		{maxWait: "1500", want: controlHeaders{maxWait: 1500 * time.Millisecond}},
		{prefer: []string{"respond-async"}, want: controlHeaders{async: true}},
		{progress: "1", want: controlHeaders{progress: true}},
		{maxWait: "soon", bad: true}, {prefer: []string{"respond-async=1"}, bad: true}, {progress: "maybe", bad: true},
	} {
		got, err := readControlHeaders(c.maxWait, c.prefer, c.progress)
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("%+v: %+v, %v", c, got, err)
		}
	}
}

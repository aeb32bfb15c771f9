// Package benchpost drives a gateway benchmark over real connections:
// many clients posting one request, every answer checked.
package benchpost

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Parallel posts body (JSON) to url from 16 clients per P until b.N
// answers, each of which must be a 200 and, with wantHit, carry
// X-Cache: HIT. Its connections are closed when it returns.
func Parallel(b *testing.B, url, body string, wantHit bool) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || wantHit && resp.Header.Get("X-Cache") != "HIT" {
				b.Errorf("status %d, X-Cache %q", resp.StatusCode, resp.Header.Get("X-Cache"))
				return
			}
		}
	})
}

package httpdate

import (
	"net/http"
	"testing"
	"time"
)

// Cache formats what net/http would send, and keeps the latest second.
func TestCacheFormatsAsNetHTTP(t *testing.T) {
	var dc Cache
	t1 := time.Date(2030, 2, 3, 4, 5, 6, 7, time.FixedZone("X", 3600))
	if got, want := dc.At(t1)[0], t1.UTC().Format(http.TimeFormat); got != want || want != "Sun, 03 Feb 2030 03:05:06 GMT" {
		t.Fatalf("At: %q, want %q", got, want)
	}
	if dc.At(t1.Add(-time.Second))[0] != t1.Add(-time.Second).UTC().Format(http.TimeFormat) || dc.published() != t1.Unix() {
		t.Fatal("an earlier second replaced the published one")
	}
}

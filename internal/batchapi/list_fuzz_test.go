package batchapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

// FuzzListQuery drives the list endpoints' query parsing (GET /v1/batches
// and GET /v1/files: limit, order, and the batch cursor after) with any
// raw query, read as r.URL.Query() reads it. Properties: no panic; a
// limit is the default when absent, else 1..max as written, else a 400
// naming limit; an order is "", asc or desc, else a 400 naming order;
// refusals' messages bounded and without Go's words; limit=n for every
// n in range reads back as n; an after taken for a batch cursor starts
// batch_ and 12 lower-case hex digits.
func FuzzListQuery(f *testing.F) {
	f.Add("limit=20&after=batch_0194f2a3b4c5d6e7f8a9b0c1", 7)
	f.Add("limit=0&order=asc", 1)
	f.Add("limit=10001&order=desc", 10000)
	f.Add("limit=+5&order=ASC&after=file-abc", 100)
	f.Add("limit=99999999999999999999999&limit=3", -2)
	f.Add("order=asc;limit=%zz&after=batch_", 50)
	f.Fuzz(func(t *testing.T, raw string, n int) {
		q, _ := url.ParseQuery(raw) // what r.URL.Query() keeps of it
		for _, max := range []int{maxListLimit, maxFileListLimit} {
			limit, err := listLimit(q, defaultListLimit, max)
			switch {
			case err != nil:
				checkRefusal(t, raw, err, "limit")
			case q.Get("limit") == "" && limit != defaultListLimit:
				t.Fatalf("%q: no limit read as %d", raw, limit)
			case q.Get("limit") != "" && (limit < 1 || limit > max || strconv.Itoa(limit) != strings.TrimLeft(strings.TrimPrefix(q.Get("limit"), "+"), "0")):
				t.Fatalf("%q: limit read as %d (max %d)", raw, limit, max)
			}
			if n >= 1 && n <= max {
				if got, err := listLimit(url.Values{"limit": {strconv.Itoa(n)}}, defaultListLimit, max); err != nil || got != n {
					t.Fatalf("limit=%d read as %d, %v", n, got, err)
				}
			}
		}
		if order, err := listOrder(q); err != nil {
			checkRefusal(t, raw, err, "order")
		} else if order != "" && order != "asc" && order != "desc" {
			t.Fatalf("%q: order %q", raw, order)
		}
		if after := q.Get("after"); batchCursor(after) {
			hex, ok := strings.CutPrefix(after, "batch_")
			if !ok || len(hex) < 12 || strings.Trim(hex[:12], "0123456789abcdef") != "" {
				t.Fatalf("%q taken as a batch cursor", after)
			}
		}
	})
}

func checkRefusal(t *testing.T, raw string, err error, param string) {
	t.Helper()
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.Status != http.StatusBadRequest || oe.Param != param || len(oe.Message) > 200 {
		t.Fatalf("%q: refusal %#v", raw, err)
	}
	for _, w := range []string{"strconv", "Atoi", "int", "parsing"} {
		if strings.Contains(oe.Message, w+" ") || strings.Contains(oe.Message, w+":") {
			t.Fatalf("%q: message %q says %q", raw, oe.Message, w)
		}
	}
}

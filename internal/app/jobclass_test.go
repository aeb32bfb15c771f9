package app

import (
	"net/http"
	"strings"
	"testing"
)

// An async job keeps its submitter's class (interactive unless the client
// asks for batch), as README and examples/sluice.yaml say: the class
// orders the job queue; either way the job runs only from spare capacity.
func TestAsyncJobKeepsItsSubmittersClass(t *testing.T) {
	be, _ := countingBackend(t)
	url := startQueueApp(t, be.URL)
	for _, tc := range []struct{ priority, want string }{{"", "interactive"}, {"batch", "batch"}, {"interactive", "interactive"}} {
		var hdr []string
		if tc.priority != "" {
			hdr = []string{"X-Sluice-Priority", tc.priority}
		}
		loc := submitWith(t, url, hdr...)
		m := waitJob(t, url, loc, "", func(m map[string]any) bool { return m["status"] == "succeeded" })
		if m["class"] != tc.want {
			t.Errorf("priority %q: job class %v, want %s", tc.priority, m["class"], tc.want)
		}
	}
}

// submitWith queues chatBody with extra headers, waiting for the queue.
func submitWith(t *testing.T, url string, hdr ...string) string {
	t.Helper()
	all := append([]string{"Prefer", "respond-async"}, hdr...)
	var loc string
	eventually(t, "the queue to accept a job", func() bool {
		code, h, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chatBody), all...)
		loc = h.Get("Location")
		return code == http.StatusAccepted
	})
	return loc
}

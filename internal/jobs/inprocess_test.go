package jobs

import (
	"net"
	"testing"
)

// The gateway's own connection to its embedded server goes through a
// pipe, not a socket: the URL here is a loopback port nothing listens on,
// so only the in-process connection can open the Store and queue a job.
func TestEmbeddedStoreConnectsInProcess(t *testing.T) {
	srv := startServer(t, t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + l.Addr().String()
	l.Close()
	o := testOptions(dead)
	o.Embedded = srv
	s := openStore(t, o)
	j, _, err := s.Submit(t.Context(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJob(t, s, "acme", j.ID); got.Status != StatusQueued {
		t.Fatalf("job %s is %s, want queued", j.ID, got.Status)
	}
}

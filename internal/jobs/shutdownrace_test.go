package jobs

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
)

// A stream whose creation is under way when the embedded server stops is
// stopped with it. nats-server v2.15.2 registers a new stream with its
// account only at the end of its creation, and its JetStream shutdown
// stops the streams registered then: one created across the stop kept its
// file store, whose flushStreamStateLoop ran on (and wrote the stream's
// state into the data directory every 2 minutes) after the server was
// gone. A start whose store provisioning timed out (openQueue's 30 s under
// a CPU hog) stopped the server with its last bucket's creation queued,
// and later tests' leak checks found that goroutine.
func TestShutdownStopsStreamsCreatedAcrossIt(t *testing.T) {
	before := goleak.IgnoreCurrent()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.ClientURL(), nats.InProcessServer(e))
	if err != nil {
		e.Shutdown()
		t.Fatal(err)
	}
	// Creations queued without waiting for their answers, as a client
	// that gave up waiting leaves them: the server's API workers are
	// creating streams when the stop comes.
	inbox := nats.NewInbox()
	for i := range 64 {
		cfg := fmt.Sprintf(`{"name":"race%d","subjects":["race%d.>"],"storage":"file"}`, i, i)
		if err := nc.PublishRequest(fmt.Sprintf("$JS.API.STREAM.CREATE.race%d", i), inbox, []byte(cfg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil { // the server has read (and queued) them all
		t.Fatal(err)
	}
	nc.Close()
	e.Shutdown()
	leaktest.VerifyNone(t, before)
}

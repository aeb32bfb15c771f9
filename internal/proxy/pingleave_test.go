package proxy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Without a first-token bound a keep-alive comment commits the stream;
// a client that leaves before the first data (an SDK's read timeout on a
// backend that pings while it queues) ends a stream that never started.
// Its backend's time to first token is then at least the wait (as for a
// silent backend the client left, failEarly), not the ping's: before, the
// end released the call with the commit's time (the ping's, about 0) as a
// success's latency, so the queueing backend looked the promptest of the
// pool to p2c, the adaptive limit and the hedge delay.
func TestClientLeavingAfterPingsLearnsNoPromptStart(t *testing.T) {
	clock := newClock()
	b := sseBackend(t, ping, gate(nil)) // queues until the client leaves
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := newPingWriter()
	results := forwardAsync(ctx, forwarder(t, clocked(clock)), w, chatStream(t, nil), fixedSelector{b})
	w.awaitFirstBytes(t, results) // the ping went out: the stream is committed
	clock.Advance(10 * time.Second)
	cancel() // the client leaves
	res := <-results
	if !errors.Is(res.Err, context.Canceled) || w.Body.String() != ping {
		t.Fatalf("err %v, relayed %q; want the ping alone and the client gone", res.Err, w.Body.String())
	}
	if got := b.TypicalLatency(); got < 10*time.Second {
		t.Fatalf("time to first token learnt %v; want at least the 10 s the client waited, not the ping's", got)
	}
}

// A compressed JSON answer to a stream request (from a backend that
// compresses although every stream is asked uncompressed) is relayed
// raw; the tenant ramp is told it answered only once it ended whole, as
// relayAnswer tells it. Before, relayRaw told Answered at the commit, so
// one that broke off counted as a completion.
func TestAnsweredOnlyWhenTheCompressedAnswerEnded(t *testing.T) {
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = io.WriteString(zw, `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"`+
		strings.Repeat("a", 4<<10)+`"},"finish_reason":"stop"}]}`)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	answeredOnlyWhenEnded(t, reply{ct: "application/json", gzip: true, body: zipped.String()}, 10)
}

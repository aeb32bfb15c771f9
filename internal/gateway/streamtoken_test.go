package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// admin.token is read per request, and a /status/stream is one request
// that lasts: before, a reload that rotated the token (after a leak) left
// every stream the old token had opened sending tenants and backend URLs
// for as long as it stayed open. Now each event is sent only while the
// request's token is still the configured one: the next tick ends the
// stream, and the old token opens no new one.
func TestStatusStreamEndsWhenTheTokenChanges(t *testing.T) {
	var deps Deps
	cfg := testConfig(newOKBackend(t).URL)
	cfg.Admin.Token = "old-token"
	_, gw := startGatewayWith(t, cfg, func(d *Deps) { deps = *d })
	rig := &streamRig{gw: gw, tickers: make(chan chan time.Time, 4)}
	gw.streams = newStatusStreams(func(time.Duration) (<-chan time.Time, func()) {
		ch := make(chan time.Time)
		rig.tickers <- ch
		return ch, func() {}
	})
	rig.admin = adminServer(t, gw)
	t.Cleanup(gw.CloseStreams)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, events := rig.watch(t, ctx, "Authorization", "Bearer old-token")
	tick := <-rig.tickers
	next(t, events)
	tick <- time.Now()
	next(t, events) // the token unchanged: events go on

	rotated := testConfig(cfg.Models[0].Backends[0].URL)
	rotated.Admin.Token = "new-token"
	rt, err := Build(rotated, deps, gw.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(rt)
	tick <- time.Now()
	for doc := range events { // ends, with no further event
		t.Fatalf("an event after the token changed: %v", doc.Time)
	}
	if resp, _ := rig.watch(t, ctx, "Authorization", "Bearer old-token"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old token opened a stream: %d", resp.StatusCode)
	}
	resp, events := rig.watch(t, ctx, "Authorization", "Bearer new-token")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the new token: %d", resp.StatusCode)
	}
	<-rig.tickers
	next(t, events)
}

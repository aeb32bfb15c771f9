package jobs

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Connections kept for reuse after a delivery are bounded over all
// destinations, which clients choose: before, each destination kept its
// idle sockets for 30 s, so webhooks to many ports held as many sockets.
func TestWebhookIdleConnectionsBounded(t *testing.T) {
	var open atomic.Int64
	track := func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	n := webhookMaxIdleConns + 16
	var urls []string
	for range n {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Config.ConnState = track
		srv.Start()
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL+"/hook")
	}
	snd := newWebhookSender([]byte("s3cret"), true, time.Now)
	t.Cleanup(snd.client.CloseIdleConnections)
	for _, u := range urls {
		if err := snd.send(context.Background(), u, "job_1", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, fmt.Sprintf("at most %d connections open (%d destinations)", webhookMaxIdleConns, n), func() bool {
		return open.Load() <= webhookMaxIdleConns
	})
}

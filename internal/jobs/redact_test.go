package jobs

import (
	"context"
	"net"
	"strings"
	"testing"
)

// A NATS that cannot be reached is named in the error (logged at every
// retry) with its password hidden; it was quoted whole.
func TestConnectErrorHidesPassword(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused at once
	_, err = Open(context.Background(), Options{URL: "nats://user:s3cretPW@" + addr})
	if err == nil || strings.Contains(err.Error(), "s3cretPW") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Fatalf("Open: %v, want an error naming the URL without its password", err)
	}
}

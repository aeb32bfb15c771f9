package jobs

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATSCluster runs a JetStream cluster of n embedded servers on
// loopback and returns their client URLs joined by commas (as queue.url
// takes them) once the cluster has a meta leader.
func startNATSCluster(t *testing.T, n int) string {
	t.Helper()
	// Route ports are chosen first: every server names all routes.
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var (
		urls []string
		srvs []*server.Server
	)
	for i := range n {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "sluice-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(srv.Shutdown)
		srvs = append(srvs, srv)
	}
	for i, srv := range srvs {
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats server %d not ready", i)
		}
		urls = append(urls, srv.ClientURL())
	}
	eventually(t, "a JetStream meta leader", func() bool {
		for _, s := range srvs {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return strings.Join(urls, ",")
}

// TestOpenConcurrentOnCluster starts three stores at once on a fresh
// three-node cluster with replicas 3, as gateway replicas do in a rollout.
// Creating the same stream or bucket concurrently leaves every creator
// unanswered; each call used to wait out the whole context, so no store
// opened (measured: minutes of "job queue unavailable" with two gateways).
// Each call is now bounded and asked again (provision.go).
func TestOpenConcurrentOnCluster(t *testing.T) {
	urls := startNATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const stores = 3
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, stores)
		got   = make([]*Store, stores)
	)
	for i := range stores {
		wg.Go(func() {
			o := testOptions(urls)
			o.Name, o.Replicas, o.NoTracker = fmt.Sprintf("gw%d", i), 3, true
			<-start
			got[i], errs[i] = Open(ctx, o)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
			continue
		}
		if err := got[i].Close(); err != nil {
			t.Error(err)
		}
	}
	// Every object is there, replicated as asked.
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{workStream, deadStream, "KV_" + jobsBucket, "KV_" + bodiesBucket,
		"KV_" + idemBucket, "KV_" + batchBucket, "OBJ_" + filesBucket} {
		info, err := js.StreamInfo(name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s: replicas %d, want 3", name, info.Config.Replicas)
		}
	}
}

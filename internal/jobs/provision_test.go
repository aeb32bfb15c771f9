package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATSCluster runs a JetStream cluster of n embedded servers on
// loopback (named n0, n1, ...) and returns their client URLs joined by
// commas (as queue.url takes them) once the cluster has a meta leader,
// the servers, and their options (to start one again).
func startNATSCluster(t *testing.T, n int) (string, []*server.Server, []*server.Options) {
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
		opts []*server.Options
	)
	for i := range n {
		opts = append(opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "sluice-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		srv, err := server.NewServer(opts[i])
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
	// A meta leader that knows every peer: before that, an object with
	// replicas n finds no placement.
	eventually(t, "a JetStream meta leader with every peer", func() bool {
		for _, s := range srvs {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				return true
			}
		}
		return false
	})
	return strings.Join(urls, ","), srvs, opts
}

// TestOpenConcurrentOnCluster starts three stores at once on a fresh
// three-node cluster with replicas 3, as gateway replicas do in a rollout.
// Creating the same stream or bucket concurrently leaves every creator
// unanswered; each call used to wait out the whole context, so no store
// opened (measured: minutes of "job queue unavailable" with two gateways).
// Each call is now bounded and asked again (provision.go).
func TestOpenConcurrentOnCluster(t *testing.T) {
	urls, _, _ := startNATSCluster(t, 3)
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

// TestWhileLeaderless: a write no stream leader took (no responders) is
// sent again until one answers; any other outcome ends it at once; the
// tries stop at the limit. (A Submit-level test needs a stream left
// without a leader, which only a crashed node gives: an embedded server's
// Shutdown steps its leaders down first, and the others take over in
// milliseconds. The binary was measured against nats-server killed with
// SIGKILL instead: docs/RELIABILITY.md.)
func TestWhileLeaderless(t *testing.T) {
	calls := 0
	err := whileLeaderless(t.Context(), time.Minute, nil, func() error {
		if calls++; calls < 3 {
			return fmt.Errorf("put: %w", jetstream.ErrNoStreamResponse)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("leaderless twice then stored: err %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	other := errors.New("wrong last sequence")
	if err := whileLeaderless(t.Context(), time.Minute, nil, func() error { calls++; return other }); !errors.Is(err, other) || calls != 1 {
		t.Fatalf("another error: %v after %d calls, want it after 1", err, calls)
	}
	calls = 0
	err = whileLeaderless(t.Context(), time.Nanosecond, nil, func() error { calls++; return jetstream.ErrNoStreamResponse })
	if !errors.Is(err, jetstream.ErrNoStreamResponse) || calls != 1 {
		t.Fatalf("no leader within the limit: %v after %d calls, want ErrNoStreamResponse after 1", err, calls)
	}
}

// TestSubmitWaitsForTheStreamLeader stops the only server of the bodies
// bucket (replicas 1) and submits through another: the write finds no
// responder, as while a cluster elects a leader after a node was killed.
// The submit used to fail at once (after the client's two 250 ms
// retries: a 503); it now waits, and once the server is back the job is
// stored.
func TestSubmitWaitsForTheStreamLeader(t *testing.T) {
	urls, srvs, opts := startNATSCluster(t, 3)
	o := testOptions(urls)
	o.Replicas, o.NoTracker, o.RequestTimeout = 1, true, 20*time.Second
	s := openStore(t, o)
	info, err := s.js.Stream(t.Context(), "KV_"+bodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	leader, down, other := info.CachedInfo().Cluster.Leader, -1, -1
	for i, srv := range srvs {
		if srv.Name() == leader {
			down = i
		} else {
			other = i
		}
	}
	if down < 0 {
		t.Fatalf("no server named %q holds %s", leader, bodiesBucket)
	}
	o.URL = srvs[other].ClientURL()
	s2 := openStore(t, o)
	found := make(chan struct{}, 1)
	s2.leaderless = func() {
		select {
		case found <- struct{}{}:
		default:
		}
	}
	srvs[down].Shutdown()
	srvs[down].WaitForShutdown()
	// Until the server the submit goes through has dropped the stopped
	// server's interest, a write is routed to it and goes unanswered (a
	// timeout, which is never sent again: it may have been stored).
	acc := srvs[other].GlobalAccount()
	eventually(t, "the stopped server's interest dropped", func() bool {
		return !acc.SubscriptionInterest("$KV." + bodiesBucket + ".j.probe")
	})

	done := make(chan error, 1)
	go func() {
		_, _, err := s2.Submit(t.Context(), Spec{Tenant: "t", Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the submit ended while %s had no server: %v", bodiesBucket, err)
	case <-found:
	}
	back, err := server.NewServer(opts[down])
	if err != nil {
		t.Fatal(err)
	}
	back.Start()
	t.Cleanup(back.Shutdown)
	if err := <-done; err != nil {
		t.Fatalf("submit once the server is back: %v", err)
	}
}

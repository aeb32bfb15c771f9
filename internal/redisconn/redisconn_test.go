package redisconn

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

type pinger struct{ c rueidis.Client }

func (p *pinger) ping() error {
	return p.c.Do(context.Background(), p.c.B().Ping().Build()).Error()
}

func build(c rueidis.Client) *pinger { return &pinger{c} }

// TestLazyDialsOnFirstUseAndSpacesRetries: with Redis down, Get fails at
// once with ErrUnavailable and, within the redial interval, does not dial
// again; once Redis is up and the interval has passed, the next Get
// connects; Close ends it.
func TestLazyDialsOnFirstUseAndSpacesRetries(t *testing.T) {
	rd := redistest.Start(t)
	rd.Stop()
	now := time.Unix(1000, 0)
	l := NewLazy(Option(config.Redis{Addrs: []string{rd.Addr}}), build, time.Second,
		func() time.Time { return now })
	if _, err := l.Get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Redis down: %v, want ErrUnavailable", err)
	}
	rd.Restart()
	if _, err := l.Get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("within the redial interval: %v, want ErrUnavailable without a dial", err)
	}
	if l.Loaded() != nil {
		t.Fatal("Loaded before a connection")
	}
	now = now.Add(time.Second)
	p, err := l.Get()
	if err != nil {
		t.Fatalf("Redis up, interval passed: %v", err)
	}
	if err := p.ping(); err != nil {
		t.Fatal(err)
	}
	if again, _ := l.Get(); again != p || l.Loaded() != p {
		t.Fatal("a second Get made a second value")
	}
	l.Close()
	if _, err := l.Get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: %v, want ErrUnavailable", err)
	}
}

func TestOptionDefaults(t *testing.T) {
	o := Option(config.Redis{Addrs: []string{"a:1"}})
	if o.Dialer.Timeout != config.DefaultRedisConnectTimeout || o.DisableCache || o.ClientName != SharedName {
		t.Fatalf("option: %+v", o)
	}
	o = Option(config.Redis{ConnectTimeout: config.Duration(time.Second)})
	if o.Dialer.Timeout != time.Second || o.DisableCache {
		t.Fatalf("option: %+v", o)
	}
}

// TestSharedLazyOneClient: users of one Redis (the rate limits' store, the
// Responses ids, the cache's second level) get one client, not one each,
// whatever their connect timeouts and the order of the seeds; it outlives
// the first user's Close and is closed with the last. Another database is
// another Redis: its own client.
func TestSharedLazyOneClient(t *testing.T) {
	rd := redistest.Start(t)
	clients := NewClients(nil, nil)
	opt := Option(config.Redis{Addrs: []string{rd.Addr}})
	a := NewSharedLazy(clients, opt, build, 0, nil)
	b := NewSharedLazy(clients, Option(config.Redis{Addrs: []string{rd.Addr}, ConnectTimeout: config.Duration(time.Second)}),
		build, time.Second, nil)
	other := NewSharedLazy(clients, Option(config.Redis{Addrs: []string{rd.Addr}, DB: 1}), build, 0, nil)
	pa, err := a.Get()
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.Get()
	if err != nil {
		t.Fatal(err)
	}
	po, err := other.Get()
	if err != nil {
		t.Fatal(err)
	}
	if pa.c != pb.c || pa.c == po.c || clients.Open() != 2 {
		t.Fatalf("one Redis: one client; another database: its own (open %d)", clients.Open())
	}
	for _, p := range []*pinger{pa, pb, po} {
		if err := p.ping(); err != nil {
			t.Fatal(err)
		}
	}
	if names := redistest.ClientNames(t, rd.Addr); len(names) != 1 || names[SharedName] != 2 {
		t.Fatalf("connections by name: %v, want two %s (one per database)", names, SharedName)
	}
	a.Close()
	if err := pb.ping(); err != nil {
		t.Fatalf("the other holder's client after the first Close: %v", err)
	}
	if _, err := a.Get(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get after Close: %v", err)
	}
	b.Close()
	other.Close()
	if clients.Open() != 0 {
		t.Fatalf("%d clients open after every holder closed", clients.Open())
	}
	if names := redistest.ClientNames(t, rd.Addr); len(names) != 0 {
		t.Fatalf("connections left after every holder closed: %v", names)
	}
}

func TestClientKeySeedOrder(t *testing.T) {
	ab := clientKey(Option(config.Redis{Addrs: []string{"a:1", "b:1"}}))
	if ba := clientKey(Option(config.Redis{Addrs: []string{"b:1", "a:1"}})); ab != ba {
		t.Fatalf("the same seeds in another order: %s != %s", ab, ba)
	}
	for _, c := range []config.Redis{
		{Addrs: []string{"a:1"}},
		{Addrs: []string{"a:1", "b:1"}, DB: 2},
		{Addrs: []string{"a:1", "b:1"}, Username: "u"},
		{Addrs: []string{"a:1", "b:1"}, Password: "p"},
	} {
		if clientKey(Option(c)) == ab {
			t.Fatalf("%+v: the same key as another Redis", c)
		}
	}
}

// TestSharedLazyNoWaitOnAnothersDial: while one user dials (Redis stopped
// mid-handshake), another user of the same Redis fails at once with
// ErrUnavailable instead of waiting or dialling a second client; once the
// dial completes, both hold the one client: the other user's next Get
// takes it, its redial interval notwithstanding (it dialled nothing).
func TestSharedLazyNoWaitOnAnothersDial(t *testing.T) {
	rd := redistest.Start(t)
	clients := NewClients(nil, nil)
	opt := Option(config.Redis{Addrs: []string{rd.Addr}, ConnectTimeout: config.Duration(time.Minute)})
	a := NewSharedLazy(clients, opt, build, 0, nil)
	frozen := time.Unix(1000, 0)
	b := NewSharedLazy(clients, opt, build, time.Hour, func() time.Time { return frozen })
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	rd.Pause()
	got := make(chan error, 1)
	go func() {
		_, err := a.Get()
		got <- err
	}()
	for !clients.dialingNow() {
		runtime.Gosched()
	}
	if _, err := b.Get(); !errors.Is(err, ErrUnavailable) {
		rd.Resume()
		t.Fatalf("while another dials: %v, want ErrUnavailable at once", err)
	}
	rd.Resume()
	if err := <-got; err != nil {
		t.Fatalf("the dial: %v", err)
	}
	pb, err := b.Get()
	if err != nil {
		t.Fatalf("after the other's dial, within the redial interval: %v", err)
	}
	pa, _ := a.Get()
	if pa.c != pb.c || clients.Open() != 1 {
		t.Fatalf("after the dial: %d clients, want one shared", clients.Open())
	}
}

// dialingNow reports whether a dial is under way (tests).
func (c *Clients) dialingNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sc := range c.clients {
		if sc.dialing {
			return true
		}
	}
	return false
}

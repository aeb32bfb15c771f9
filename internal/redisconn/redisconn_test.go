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
	l := NewLazy(Option(config.Redis{Addrs: []string{rd.Addr}}, "sluice-test", false), build, time.Second,
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
	o := Option(config.Redis{Addrs: []string{"a:1"}}, "n", true)
	if o.Dialer.Timeout != config.DefaultRedisConnectTimeout || o.DisableCache || o.ClientName != "n" {
		t.Fatalf("option: %+v", o)
	}
	o = Option(config.Redis{ConnectTimeout: config.Duration(time.Second)}, "n", false)
	if o.Dialer.Timeout != time.Second || !o.DisableCache {
		t.Fatalf("option: %+v", o)
	}
}

// TestSharedLazyOneClient: two users of one Redis with equal options (the
// rate limits' store and the Responses ids) get one client, not two; it
// outlives the first user's Close and is closed with the last. Options
// that differ (another name) get their own.
func TestSharedLazyOneClient(t *testing.T) {
	rd := redistest.Start(t)
	clients := NewClients()
	opt := Option(config.Redis{Addrs: []string{rd.Addr}}, "sluice-shared", false)
	a := NewSharedLazy(clients, opt, build, 0, nil)
	b := NewSharedLazy(clients, opt, build, time.Second, nil)
	other := NewSharedLazy(clients, Option(config.Redis{Addrs: []string{rd.Addr}}, "sluice-other", false), build, 0, nil)
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
		t.Fatalf("equal options: one client; another name: its own (open %d)", clients.Open())
	}
	for _, p := range []*pinger{pa, pb, po} {
		if err := p.ping(); err != nil {
			t.Fatal(err)
		}
	}
	if names := redistest.ClientNames(t, rd.Addr); names["sluice-shared"] != 1 || names["sluice-other"] != 1 {
		t.Fatalf("connections by name: %v, want one each", names)
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

// TestSharedLazyNoWaitOnAnothersDial: while one user dials (Redis stopped
// mid-handshake), another user of the same Redis fails at once with
// ErrUnavailable instead of waiting or dialling a second client; once the
// dial completes, both hold the one client.
func TestSharedLazyNoWaitOnAnothersDial(t *testing.T) {
	rd := redistest.Start(t)
	clients := NewClients()
	opt := Option(config.Redis{Addrs: []string{rd.Addr}, ConnectTimeout: config.Duration(time.Minute)}, "sluice-shared", false)
	a := NewSharedLazy(clients, opt, build, 0, nil)
	b := NewSharedLazy(clients, opt, build, 0, nil)
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
		t.Fatal(err)
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

package redisconn

import (
	"context"
	"errors"
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

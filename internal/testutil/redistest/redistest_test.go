package redistest

import (
	"strings"
	"testing"
)

func TestServerStopRestart(t *testing.T) {
	s := Start(t)
	if r, err := s.Do("SET", "k", "v"); err != nil || r != "OK" {
		t.Fatalf("SET = %q, %v", r, err)
	}
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Restart()
	if r, err := s.Do("GET", "k"); err != nil || r != "" {
		t.Fatalf("GET after restart = %q, %v; want a fresh empty server", r, err)
	}
}

func TestServerPause(t *testing.T) {
	s := Start(t)
	s.Pause()
	if _, err := do(s.Addr, 200e6, "PING"); err == nil {
		t.Fatal("paused server answered")
	}
	s.Resume()
	if r, err := s.Do("PING"); err != nil || r != "PONG" {
		t.Fatalf("PING after resume = %q, %v", r, err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	info, err := c.Servers[0].Do("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_slots_assigned:16384") {
		t.Fatalf("cluster info = %q, %v", info, err)
	}
}

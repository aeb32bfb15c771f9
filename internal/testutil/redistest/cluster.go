package redistest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of masters without replicas, each a Server.
type Cluster struct {
	Addrs   []string // every master's 127.0.0.1:port
	Servers []*Server
}

// StartCluster starts n masters (at least 3, Redis Cluster's minimum) with
// cluster mode enabled, joins them with `redis-cli --cluster create`, and
// waits until every node reports cluster_state:ok. All are stopped in
// t.Cleanup. extra are more redis-server arguments for every node (such as
// --cluster-require-full-coverage no).
func StartCluster(t testing.TB, n int, extra ...string) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, got %d", n)
	}
	server := lookRedis(t, "redis-server")
	cli := lookRedis(t, "redis-cli")
	c := &Cluster{}
	for range n {
		dir := t.TempDir()
		args := append([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
		}, extra...)
		s := startOnFreePort(t, server, dir, args)
		t.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}

	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(startTimeout); err != nil {
		t.Fatalf("redistest: %v\n%s", err, out)
	}
	return c
}

// waitOK polls CLUSTER INFO on every node until all say cluster_state:ok
// and know all n nodes (a client that asks a lagging node for the slot map
// would otherwise see a partial cluster).
func (c *Cluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := "cluster_known_nodes:" + strconv.Itoa(len(c.Addrs))
	for {
		var notOK string
		for _, a := range c.Addrs {
			info, err := do(a, time.Second, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) {
				notOK = fmt.Sprintf("%s: %v %q", a, err, firstLine(info))
				break
			}
		}
		if notOK == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok within %v: %s", timeout, notOK)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

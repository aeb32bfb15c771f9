package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// redisCluster is 3 masters + 3 replicas, as the seed runs it, each a
// redis-server child. The node timeout is 1s so a failover fits in a
// --quick attack.
type redisCluster struct {
	cli   string
	nodes []*daemon
}

func (c *redisCluster) addrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.addr)
	}
	return out
}

func (c *redisCluster) kill() {
	for _, n := range c.nodes {
		n.kill()
	}
}

// info runs redis-cli against addr.
func (c *redisCluster) info(ctx context.Context, addr string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

// waitOK waits until every live node reports cluster_state:ok.
func (c *redisCluster) waitOK(ctx context.Context, timeout time.Duration, skip string) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, n := range c.nodes {
			if n.addr == skip {
				continue
			}
			out, err := c.info(ctx, n.addr, "cluster", "info")
			if err != nil || !strings.Contains(out, "cluster_state:ok") {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis cluster not ok within %s", timeout)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func setupRedisCluster(ctx context.Context, e *env) (gatewaySpec, func(), string, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return gatewaySpec{}, nil, "redis-server not installed", nil
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return gatewaySpec{}, nil, "redis-cli not installed", nil
	}
	c := &redisCluster{cli: cli}
	for i := range 6 {
		port, err := clusterPort()
		if err != nil {
			return gatewaySpec{}, c.kill, "", err
		}
		dir := filepath.Join(e.dir, fmt.Sprintf("redis-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return gatewaySpec{}, c.kill, "", err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		d, skip, err := startDaemon(ctx, "redis-server", addr, filepath.Join(dir, "redis.log"),
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "1000")
		if skip != "" || err != nil {
			return gatewaySpec{}, c.kill, skip, err
		}
		c.nodes = append(c.nodes, d)
	}
	args := append([]string{"--cluster", "create"}, c.addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return gatewaySpec{}, c.kill, "", fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	if err := c.waitOK(ctx, 20*time.Second, ""); err != nil {
		return gatewaySpec{}, c.kill, "", err
	}
	e.cluster = c
	return gatewaySpec{RedisAddrs: c.addrs()}, c.kill, "", nil
}

// redisClusterFailover SIGKILLs one master early in the attack (15%: the
// failover takes a few node timeouts, and the rest of the attack must see
// it) and notes when a replica was promoted.
func redisClusterFailover(ctx context.Context, e *env, row *Row) error {
	c := e.cluster
	var victim *daemon
	for _, n := range c.nodes {
		if out, err := c.info(ctx, n.addr, "role"); err == nil && strings.HasPrefix(strings.TrimSpace(out), "master") {
			victim = n
			break
		}
	}
	if victim == nil {
		return fmt.Errorf("no master found in the cluster")
	}
	at(ctx, attackLength(ctx), 0.15, func() {
		killed := time.Now()
		victim.kill()
		if err := c.waitFailover(ctx, victim.addr); err != nil {
			row.note("master %s killed; no replica promoted before the attack ended", victim.addr)
			return
		}
		row.note("master %s killed; a replica was promoted after %s", victim.addr, time.Since(killed).Round(100*time.Millisecond))
	})
	<-ctx.Done()
	return nil
}

// waitFailover waits until a live node sees the victim as failed and three
// masters not failed (a replica promoted in its place).
func (c *redisCluster) waitFailover(ctx context.Context, victim string) error {
	_, port, _ := net.SplitHostPort(victim)
	for ctx.Err() == nil {
		for _, n := range c.nodes {
			if n.addr == victim {
				continue
			}
			out, err := c.info(ctx, n.addr, "cluster", "nodes")
			if err != nil {
				continue
			}
			masters, victimFailed := 0, false
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) < 3 {
					continue
				}
				if strings.HasPrefix(f[1], "127.0.0.1:"+port+"@") && strings.Contains(f[2], "fail") {
					victimFailed = true
				}
				if strings.Contains(f[2], "master") && !strings.Contains(f[2], "fail") {
					masters++
				}
			}
			if victimFailed && masters == 3 {
				return nil
			}
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return ctx.Err()
}

// clusterPort is a free loopback port whose cluster bus port (+10000) is
// free too.
func clusterPort() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 {
			ln.Close()
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		ln.Close()
		if err == nil {
			bus.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

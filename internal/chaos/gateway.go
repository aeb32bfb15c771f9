package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// gatewaySpec is what a scenario may change in the gateway's config. The
// rest is Sluice's default configuration: only the listeners, the backends,
// the queue's data directory, a short shutdown grace, a quiet log and pprof
// on the admin listener are set, so the suite measures what a user gets out
// of the box.
type gatewaySpec struct {
	RedisAddrs      []string // rate_limits on this Redis (one node, or Cluster seeds) when set
	NATSURL         string   // external NATS when set, else embedded
	PrivateWebhooks bool     // let jobs post webhooks to the harness on loopback
	QueueOff        bool
	Policy          string // routing policy ("" = default)
	LocalLimit      string // a global requests limit in the local store when set (and no Redis)
	Trace           bool   // access log on, for a trace
}

// yaml renders the config file. Written by hand (not marshalled) so it reads
// like a user's file and stays valid whatever the config package adds.
func (s gatewaySpec) yaml(listen, admin, dataDir string, backends []string) string {
	var b strings.Builder
	if s.Trace {
		fmt.Fprintf(&b, "listen: %s\nshutdown_grace: 2s\nlog:\n  level: info\n  access: true\n", listen)
	} else {
		fmt.Fprintf(&b, "listen: %s\nshutdown_grace: 2s\nlog:\n  level: warn\n  access: false\n", listen)
	}
	// pprof on the admin listener (loopback, the harness' alone): the leak
	// target reads the goroutine profile, to count and name them.
	fmt.Fprintf(&b, "admin:\n  listen: %s\n  pprof: true\n", admin)
	if s.QueueOff {
		// The forecaster is on by default; its snapshot stays in the
		// suite's directory, not the user's data directory.
		fmt.Fprintf(&b, "queue:\n  enabled: false\nforecast:\n  snapshot: %s\n", filepath.Join(dataDir, "forecast.snapshot"))
	} else {
		fmt.Fprintf(&b, "queue:\n  data_dir: %s\n", dataDir)
		if s.NATSURL != "" {
			fmt.Fprintf(&b, "  url: %s\n", s.NATSURL)
		}
		if s.PrivateWebhooks {
			// The receiver is on loopback; webhooks are sent signed only.
			b.WriteString("  allow_private_webhooks: true\n  webhook_secret: chaos-suite-webhook-secret\n")
		}
	}
	if len(s.RedisAddrs) > 0 {
		// A generous global limit: every request asks Redis, none is
		// refused while Redis is up.
		fmt.Fprintf(&b, "rate_limits:\n  store: redis\n  redis:\n    addrs: [\"%s\"]\n  global: {requests: \"100000r/s burst=100000\"}\n",
			strings.Join(s.RedisAddrs, `", "`))
	}
	if len(s.RedisAddrs) == 0 && s.LocalLimit != "" {
		fmt.Fprintf(&b, "rate_limits:\n  global: {requests: %q}\n", s.LocalLimit)
	}
	b.WriteString("models:\n  - name: sim-model\n")
	if s.Policy != "" {
		fmt.Fprintf(&b, "    policy: %s\n", s.Policy)
	}
	b.WriteString("    backends:\n")
	for _, u := range backends {
		fmt.Fprintf(&b, "      - url: %s\n", u)
	}
	return b.String()
}

// gateway is `sluice serve --config FILE` as a child process. A child, not
// an in-process app, so that its RSS, fds and goroutines are its own, and so
// that scenarios can SIGKILL and SIGHUP it.
type gateway struct {
	exe      string
	dir      string
	cfgPath  string
	listen   string // host:port
	admin    string
	dataDir  string
	backends []string
	spec     gatewaySpec

	cmd    *exec.Cmd
	exited chan error

	mu    sync.Mutex // stats changes when a scenario restarts the gateway
	stats procStats
}

// proc is the running child's resource reader.
func (g *gateway) proc() procStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

func newGateway(exe, dir string, backends []string, spec gatewaySpec) (*gateway, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	g := &gateway{exe: exe, dir: dir, cfgPath: filepath.Join(dir, "sluice.yaml"), listen: listen, admin: admin,
		dataDir: filepath.Join(dir, "data"), backends: backends, spec: spec}
	if err := g.writeConfig(spec.yaml(listen, admin, g.dataDir, backends)); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *gateway) url() string { return "http://" + g.listen }

func (g *gateway) writeConfig(text string) error {
	// Write aside and rename, as a deploy tool would: a reload never sees
	// half a file.
	tmp := g.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return os.Rename(tmp, g.cfgPath)
}

// start runs the child and waits until it answers /healthz.
func (g *gateway) start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(g.dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(g.exe, "serve", "--config", g.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start gateway: %w", err)
	}
	g.cmd = cmd
	g.exited = make(chan error, 1)
	go func() { g.exited <- cmd.Wait(); logf.Close() }()
	obs := newObserverConns()
	stats := procStats{pid: cmd.Process.Pid, client: obs.client(), observer: obs,
		profileURL: "http://" + g.admin + "/debug/pprof/goroutine?debug=1",
		rules:      fdRules{observer: obs.has, backends: ports(g.backends), store: addrSet(g.spec.RedisAddrs)}}
	g.mu.Lock()
	g.stats = stats
	g.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := stats.client.Get(g.url() + "/healthz")
		if err == nil {
			// Read to the end: the connection stays in the observer's
			// pool, not closed behind a goroutine still exiting in the
			// gateway when the baseline is sampled.
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-g.exited:
			g.exited <- err
			return fmt.Errorf("gateway exited at start (%v); log: %s", err, g.logTail())
		case <-ctx.Done():
			g.kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.kill()
			return fmt.Errorf("gateway not healthy within 30s; log: %s", g.logTail())
		}
	}
}

// alive reports whether the child is still running.
func (g *gateway) alive() bool {
	select {
	case err := <-g.exited:
		g.exited <- err
		return false
	default:
		return true
	}
}

// kill SIGKILLs the child and waits for it.
func (g *gateway) kill() {
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	err := <-g.exited
	g.exited <- err
	g.proc().client.CloseIdleConnections()
}

// stop asks the child to shut down (SIGTERM) and kills it after a grace.
func (g *gateway) stop() {
	if g.cmd == nil || !g.alive() {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.exited:
		g.exited <- err
	case <-time.After(10 * time.Second):
		g.kill()
	}
	g.proc().client.CloseIdleConnections()
}

func (g *gateway) hup() error { return g.cmd.Process.Signal(syscall.SIGHUP) }

func (g *gateway) logTail() string {
	b, _ := os.ReadFile(filepath.Join(g.dir, "gateway.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// freeAddr finds a free loopback port. The tiny window between closing it
// and the child binding it is acceptable for a harness.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

var errNotLinux = errors.New("needs Linux /proc")

func addrSet(addrs []string) map[string]bool {
	out := map[string]bool{}
	for _, a := range addrs {
		out[a] = true
	}
	return out
}

// ports are the ports of base URLs like http://127.0.0.1:9001.
func ports(urls []string) map[int]bool {
	out := map[int]bool{}
	for _, u := range urls {
		if i := strings.LastIndexByte(u, ':'); i >= 0 {
			if p, err := strconv.Atoi(u[i+1:]); err == nil {
				out[p] = true
			}
		}
	}
	return out
}

package main

import (
	"context"
	"errors"
	"fmt"
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

// child is one process the soak started: a simulator or the gateway. The
// soak kills only its own children, by pid, and waits for them.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(ctx context.Context, name, logPath, exe string, args ...string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(c.done) }()
	return c, nil
}

// stop sends sig and waits for the exit (SIGKILL after 10 s).
func (c *child) stop(sig syscall.Signal) {
	if c == nil {
		return
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// freePort returns a loopback address with a port free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP polls url until it answers 200 or ctx/30 s end.
func waitHTTP(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", url, errors.Join(ctx.Err(), err))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rig is the simulators and the gateway on loopback ports.
type rig struct {
	exe, dir       string
	listen, admin  string
	cfgPath        string
	simAddrs       []string // simAddrs[len-1] is the one reloads add and remove
	mu             sync.Mutex
	sims           []*child
	gw             *child
	reloads        int
	perIPRate      []int // alternated by reloads: the limiter is rebuilt too
	extraBackendOn bool
	nats           string // the embedded NATS server's client address (queue.listen): the sampler counts its consumers
	batchHooksYAML string // queue.batch_webhooks entries ("": none)
	revoke         bool   // --revoke: auth.keys lists revokeKey while revokeKeyOn(reloads)
}

func newRig(ctx context.Context, exe, dir string, sims int, batchHooksYAML string, revoke bool) (*rig, error) {
	r := &rig{exe: exe, dir: dir, perIPRate: []int{20, 25}, batchHooksYAML: batchHooksYAML, revoke: revoke}
	var err error
	if r.listen, err = freePort(); err != nil {
		return nil, err
	}
	if r.admin, err = freePort(); err != nil {
		return nil, err
	}
	if r.nats, err = freePort(); err != nil {
		return nil, err
	}
	for i := 0; i < sims; i++ {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		r.simAddrs = append(r.simAddrs, a)
		r.sims = append(r.sims, nil)
		if err := r.startSim(ctx, i); err != nil {
			r.close()
			return nil, err
		}
	}
	r.cfgPath = filepath.Join(dir, "sluice.yaml")
	if err := r.writeConfig(); err != nil {
		r.close()
		return nil, err
	}
	r.gw, err = start(ctx, "gateway", filepath.Join(dir, "gateway.log"), exe, "serve", "--config", r.cfgPath)
	if err != nil {
		r.close()
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+r.listen+"/healthz"); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rig) startSim(ctx context.Context, i int) error {
	c, err := start(ctx, fmt.Sprintf("sim%d", i), filepath.Join(r.dir, fmt.Sprintf("sim%d.log", i)), r.exe,
		"sim", "--listen", r.simAddrs[i], "--seed", fmt.Sprint(i+1))
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.sims[i] = c
	r.mu.Unlock()
	return waitHTTP(ctx, "http://"+r.simAddrs[i]+"/health")
}

// killSim SIGKILLs simulator i (a backend that dies mid-answer).
func (r *rig) killSim(i int) {
	r.mu.Lock()
	c := r.sims[i]
	r.sims[i] = nil
	r.mu.Unlock()
	c.stop(syscall.SIGKILL)
}

// config is the gateway's defaults plus what the soak needs: loopback
// listeners, pprof on the admin listener, its own data directory and a
// per-address rate limit (the only protection not on by default) so that
// the bursts get 429s. The last simulator is in the pool every other
// reload, so backends are added and removed (their probes, scrapers,
// breakers and pooled connections with them).
func (r *rig) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nadmin:\n  listen: %s\n  pprof: true\n", r.listen, r.admin)
	fmt.Fprintf(&b, "queue:\n  data_dir: %s\n  listen: %s\n", filepath.Join(r.dir, "data"), r.nats)
	// Signed webhooks to the driver's loopback receiver (driver.hooks).
	b.WriteString("  webhook_secret: whsec_c29hay1zZWNyZXQtc29hay1zZWNyZXQ=\n  allow_private_webhooks: true\n")
	b.WriteString(r.batchHooksYAML) // queue.batch_webhooks (--batch-webhooks), "" without
	fmt.Fprintf(&b, "forecast:\n  snapshot: %s\n", filepath.Join(r.dir, "forecast.snapshot"))
	fmt.Fprintf(&b, "rate_limits:\n  per_ip: {requests: \"rate=%dr/s burst=20 nodelay\"}\n", r.perIPRate[r.reloads%2])
	if r.revoke {
		b.WriteString(revokeYAML(revokeKeyOn(r.reloads)))
	}
	b.WriteString("models:\n  - name: sim-model\n    backends:\n")
	n := len(r.simAddrs) - 1
	if r.extraBackendOn {
		n++
	}
	for _, a := range r.simAddrs[:n] {
		fmt.Fprintf(&b, "      - url: http://%s\n", a)
	}
	return b.String()
}

// writeConfig replaces the file by rename, as an editor or a ConfigMap
// does; the gateway's watch on the directory reloads it.
func (r *rig) writeConfig() error {
	tmp := r.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.config()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.cfgPath)
}

// reload toggles the extra backend and the per-address rate and writes
// the file (no SIGHUP: the file watch is what is exercised).
func (r *rig) reload() error {
	r.reloads++
	r.extraBackendOn = !r.extraBackendOn
	return r.writeConfig()
}

func (r *rig) close() {
	if r.gw != nil {
		r.gw.stop(syscall.SIGTERM)
	}
	r.mu.Lock()
	sims := append([]*child(nil), r.sims...)
	r.mu.Unlock()
	for _, s := range sims {
		s.stop(syscall.SIGTERM)
	}
}

// cpu is the user+system CPU seconds of the gateway, of the simulators
// running now (a restarted one counts from its restart) and of the driver.
func (r *rig) cpu() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sims float64
	for _, s := range r.sims {
		if s != nil {
			sims += cpuSeconds(fmt.Sprint(s.pid()))
		}
	}
	return fmt.Sprintf("gateway %.0f, simulators %.0f, driver %.0f", cpuSeconds(fmt.Sprint(r.gw.pid())), sims, cpuSeconds("self"))
}

// cpuSeconds reads utime+stime from /proc/PID/stat (USER_HZ is 100 on
// Linux); 0 when it cannot.
func cpuSeconds(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: count
	// fields after the last ')'. utime and stime are fields 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

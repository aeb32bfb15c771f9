package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// daemon is an external server (redis-server, nats-server) the harness
// kills and restarts on the same address.
type daemon struct {
	name string
	args []string
	addr string
	log  string

	cmd    *exec.Cmd
	exited chan error
}

// startDaemon looks bin up on PATH; a missing binary is a skip reason.
func startDaemon(ctx context.Context, bin, addr, logPath string, args ...string) (*daemon, string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, bin + " not installed", nil
	}
	d := &daemon{name: path, args: args, addr: addr, log: logPath}
	return d, "", d.start(ctx)
}

func (d *daemon) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	var lastErr error
	// The port was just released by the killed process: a few tries.
	for range 20 {
		cmd := exec.Command(d.name, d.args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = childAttr()
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", d.name, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if err := waitDial(ctx, d.addr, exited); err == nil {
			d.cmd, d.exited = cmd, exited
			return nil
		} else {
			lastErr = err
		}
		cmd.Process.Kill()
		<-exited
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not come up on %s: %w", filepath.Base(d.name), d.addr, lastErr)
}

func waitDial(ctx context.Context, addr string, exited chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not listening within 10s")
}

// kill SIGKILLs the daemon: to its clients a crash or a network cut.
func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
}

func startRedis(ctx context.Context, dir string) (*daemon, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	return startDaemon(ctx, "redis-server", addr, filepath.Join(dir, "redis.log"),
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
}

func startNATS(ctx context.Context, dir string) (*daemon, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	return startDaemon(ctx, "nats-server", addr, filepath.Join(dir, "nats.log"),
		"-js", "-a", "127.0.0.1", "-p", port, "-sd", filepath.Join(dir, "nats"))
}

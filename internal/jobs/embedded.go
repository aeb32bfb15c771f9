package jobs

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configures an in-process NATS server with JetStream.
type EmbeddedOptions struct {
	// Dir is the JetStream store directory (required): jobs, batches and
	// files survive a restart on the same Dir.
	Dir string
	// Host is the listen address, default 127.0.0.1. Only loopback
	// addresses are accepted: the embedded server has no authentication.
	Host string
	// Port is the client port; -1 picks a free one (default 4222 when 0,
	// as nats-server does).
	Port int
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// SyncAlways makes JetStream fsync every write. By default it syncs
	// every 2 minutes: a crash of this process loses nothing (writes are
	// in the kernel's cache), a crash of the machine may lose that much.
	SyncAlways bool
	// MaxStoreBytes is the server's JetStream file store limit
	// (JetStreamMaxStore): past it JetStream refuses every write, so the
	// store never outgrows it. 0: nats-server's default (75% of the
	// disk's free space at start).
	MaxStoreBytes int64
	// ReadyTimeout bounds the wait for the server to accept clients,
	// default 10s.
	ReadyTimeout time.Duration
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts nats-server in this process and waits until it
// accepts connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.Dir == "" {
		return nil, errors.New("jobs: embedded NATS needs a store directory")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if !isLoopback(o.Host) {
		return nil, fmt.Errorf("jobs: embedded NATS must listen on loopback, not %q", o.Host)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:        "sluice-embedded",
		Host:              o.Host,
		Port:              o.Port,
		JetStream:         true,
		StoreDir:          o.Dir,
		SyncAlways:        o.SyncAlways,
		JetStreamMaxStore: o.MaxStoreBytes,
		NoSigs:            true, // signals belong to the gateway, not to its library
		NoLog:             o.Logger == nil,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: configuring embedded NATS: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(slogAdapter{o.Logger}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("jobs: embedded NATS not ready after %s", o.ReadyTimeout)
	}
	return &Embedded{srv: srv}, nil
}

// ServerID is this run's server id: nats-server draws a new one at every
// start, so two runs on one store directory never share it.
func (e *Embedded) ServerID() string { return e.srv.ID() }

// ClientURL is the nats:// URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// WaitForShutdown blocks until the server has stopped.
func (e *Embedded) WaitForShutdown() { e.srv.WaitForShutdown() }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// slogAdapter gives nats-server's printf-style logger a slog destination.
type slogAdapter struct{ l *slog.Logger }

// Noticef is nats-server's start-up banner and routine notices: debug, as
// the gateway logs its own one-line summary of the queue.
func (a slogAdapter) Noticef(f string, v ...any) {
	a.l.Debug(fmt.Sprintf(f, v...), "component", "nats")
}
func (a slogAdapter) Warnf(f string, v ...any)  { a.l.Warn(fmt.Sprintf(f, v...), "component", "nats") }
func (a slogAdapter) Fatalf(f string, v ...any) { a.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (a slogAdapter) Errorf(f string, v ...any) { a.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (a slogAdapter) Debugf(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
func (a slogAdapter) Tracef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }

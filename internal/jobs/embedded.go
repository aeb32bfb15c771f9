package jobs

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nuid"
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
	// RecoverEvery is how often a store whose disk refused a write checks
	// whether Dir takes writes again, to start its server again
	// (TryRecover), default 5s; within a flapping episode the restarts
	// back off from it, doubling up to 5 minutes (faultEpisode.restartDue).
	RecoverEvery time.Duration
	// Now is the clock of the store's fault times (their start, how long
	// they lasted, the damping of a flapping disk's lines), default
	// time.Now: the app passes its own, as to the rest of the gateway.
	Now Clock
	// probe checks that Dir takes writes (probeDir); a test's seam.
	probe func(dir string) error
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	// srv is the server of the current run: a disk fault's recovery
	// replaces it by a new one on the same directory and port (restart.go).
	srv atomic.Pointer[server.Server]
	// opts is what each of its servers is made with, the port the first
	// one bound included.
	opts         server.Options
	readyTimeout time.Duration
	dir          string
	log          *slog.Logger
	// jsConfig is the JetStream limits the first server settled on, which
	// a recovery's server keeps (TryRecover).
	jsConfig     server.JetStreamConfig
	fault        storeFault
	episode      faultEpisode // the faults as logged (storeflap.go)
	now          Clock
	recoverMu    sync.Mutex
	recoverEvery time.Duration
	probe        func(dir string) error
	// The recovery loop: kicked at a fault's start, ended by stop.
	kicked   chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	loopDone chan struct{}
	// audit is what the start found damaged on disk (storeaudit.go).
	audit storeAudit
	// afterMark runs in Shutdown between the clean stop's marks and the
	// server's stop; a test's seam (clients still connected act there).
	afterMark func()
	// restartSeam replaces TryRecover's stop and start of the server in a
	// test of what is logged, which restarts it hundreds of times.
	restartSeam *[2]func() error
	// startFatal, while startServer waits for a server to be ready,
	// takes the first of nats-server's Fatalf lines: the start failed.
	startFatal atomic.Pointer[chan string]
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
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = 5 * time.Second
	}
	if o.probe == nil {
		o.probe = probeDir
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Embedded{dir: o.Dir, log: log, recoverEvery: o.RecoverEvery, probe: o.probe, now: o.Now,
		readyTimeout: o.ReadyTimeout,
		kicked:       make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{})}
	e.opts = server.Options{
		// The name is this run's, kept by a recovery's new server (whose
		// id nats-server draws anew): claims written through the embedded
		// server say it (fileClaim.Via), so two runs on one store
		// directory never share it and a recovery does not lapse them.
		ServerName:        "sluice-embedded-" + nuid.Next(),
		Host:              o.Host,
		Port:              o.Port,
		JetStream:         true,
		StoreDir:          o.Dir,
		SyncAlways:        o.SyncAlways,
		JetStreamMaxStore: o.MaxStoreBytes,
		NoSigs:            true, // signals belong to the gateway, not to its library
		// Always logged: its lines about failed writes are how the
		// store learns of a disk fault (serverLog).
		NoLog: false,
	}
	e.beforeStart(e.now())
	if err := e.startServer(); err != nil {
		return nil, err
	}
	srv := e.server()
	e.jsConfig = jetStreamConfigOf(srv, o.Dir)
	// A recovery's server listens where this one does (Port -1 included):
	// a `sluice worker` connected over TCP reconnects to it.
	if addr, ok := srv.Addr().(*net.TCPAddr); ok {
		e.opts.Port = addr.Port
	}
	e.afterStart(time.Now())
	go e.recoverLoop()
	return e, nil
}

// RunName is this run's server name, drawn at StartEmbedded and kept by
// the servers that replace its first on a disk fault's recovery: two runs
// on one store directory never share it.
func (e *Embedded) RunName() string { return e.opts.ServerName }

// server is the server of the current run.
func (e *Embedded) server() *server.Server { return e.srv.Load() }

// InProcessConn connects a client in-process to the current server: the
// Store's connection reconnects through it to a recovery's new server.
func (e *Embedded) InProcessConn() (net.Conn, error) { return e.server().InProcessConn() }

// ClientURL is the nats:// URL clients connect to.
func (e *Embedded) ClientURL() string { return e.server().ClientURL() }

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.stopOnce.Do(func() { close(e.stop) })
	<-e.loopDone
	e.recoverMu.Lock() // a recovery under way ends first
	defer e.recoverMu.Unlock()
	e.markOnStop()
	if e.afterMark != nil {
		e.afterMark()
	}
	e.stopServer() //nolint:errcheck // it always returns nil
}

// WaitForShutdown blocks until the server has stopped.
func (e *Embedded) WaitForShutdown() { e.server().WaitForShutdown() }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// slogAdapter gives nats-server's printf-style logger a slog destination,
// its lines about failed writes watched for a disk fault (serverLog).
type slogAdapter struct{ e *Embedded }

// Noticef is nats-server's start-up banner and routine notices: debug, as
// the gateway logs its own one-line summary of the queue.
func (a slogAdapter) Noticef(f string, v ...any) {
	a.e.serverLog(slog.LevelDebug, fmt.Sprintf(f, v...))
}
func (a slogAdapter) Warnf(f string, v ...any) { a.e.serverLog(slog.LevelWarn, fmt.Sprintf(f, v...)) }

// Fatalf is nats-server giving up a start: during startServer the line
// is that start's error (logged by its caller, once), else an ERROR.
// The start's line is not watched for a disk fault: one that names the
// disk ("Can't start JetStream: ... no space left on device") is the
// failed start, counted by its recovery once (restartFailed), not also a
// write the disk refused and a second fault of the episode.
func (a slogAdapter) Fatalf(f string, v ...any) {
	line := fmt.Sprintf(f, v...)
	if ch := a.e.startFatal.Load(); ch != nil {
		select {
		case *ch <- line:
		default:
		}
		a.e.log.Debug(line, "component", "nats")
		return
	}
	a.e.serverLog(slog.LevelError, line)
}
func (a slogAdapter) Errorf(f string, v ...any) { a.e.serverLog(slog.LevelError, fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any) { a.e.serverLog(slog.LevelDebug, fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any) { a.e.serverLog(slog.LevelDebug, fmt.Sprintf(f, v...)) }

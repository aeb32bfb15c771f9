package jobs

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A disk fault's recovery (TryRecover) restarts the whole embedded
// server, not JetStream in it. nats-server's in-process JetStream restart
// (ShutdownJetStream, EnableJetStream) starts GOMAXPROCS (at most 16) new
// JetStream API workers (processJSAPIRoutedRequests) each time and ends
// the previous ones only with the server: every recovery left them
// behind, blocked on the old queues, until the process ended; and two
// restarts back to back raced inside nats-server (setJetStreamExportSubs
// writing s.jsAPIRoutedReqs while a previous worker read it). nats-server
// v2.15.3 is the same. A new server on the same store directory reads it
// back as at a start; the old one's goroutines all end with it.
//
// Its clients reconnect by themselves: the Store's in-process connection
// through Embedded.InProcessConn, which reaches the current server, a
// `sluice worker` over TCP to the same port. Their pull consumers are
// durable: a job in flight at the restart is handed back on the new
// server (redelivered, its record deciding whether it runs again), one
// queued stays queued.

// restartServer is a recovery's start of a new server: the first
// start's pre-start check (beforeStart: the damaged KV blocks cut at their
// first bad record, the originals kept) before it and the start's audit
// after it. A block damaged during the fault's episode, the likeliest
// time for it, made the new server loop in nats-server under the stream's
// lock until the next process start (docs/RELIABILITY.md, restartcheck).
// afterStart's moves of the meta files and consumers nats-server did not
// load are left to a process start: the gateway's Store.Open and the
// workers' start make them again, which a recovery does not.
func (e *Embedded) restartServer() error {
	e.beforeStart(e.now())
	if err := e.startServer(); err != nil {
		return err
	}
	e.auditAfterRestart(e.now())
	return nil
}

// startServer makes, starts and publishes a server with e.opts and the
// JetStream limits the first one settled on (none before it started).
func (e *Embedded) startServer() error {
	o := e.opts // a copy: nats-server keeps and changes the one it is given
	if e.jsConfig.MaxStore > 0 {
		o.JetStreamMaxStore, o.JetStreamMaxMemory = e.jsConfig.MaxStore, e.jsConfig.MaxMemory
	}
	srv, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("jobs: configuring embedded NATS: %w", err)
	}
	fatal := make(chan string, 1)
	e.startFatal.Store(&fatal)
	defer e.startFatal.Store(nil)
	srv.SetLoggerV2(slogAdapter{e}, false, false, false)
	srv.Start()
	if err := e.waitReady(srv, fatal); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return err
	}
	e.srv.Store(srv)
	return nil
}

// waitReady waits until srv listens for clients, or says it will not.
// nats-server reports a start it gave up (its port taken, JetStream not
// started on the store directory) only in a Fatalf line and keeps
// running without a listener: ReadyForConnections waited its whole
// timeout (10 s) for it, and the reason was only in that line, logged as
// an ERROR at every try of a recovery that kept failing. The line now
// ends the wait at once and is the start's error (slogAdapter.Fatalf).
func (e *Embedded) waitReady(srv *server.Server, fatal <-chan string) error {
	deadline := time.NewTimer(e.readyTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(25 * time.Millisecond) // as ReadyForConnections polls
	defer poll.Stop()
	for srv.Addr() == nil {
		select {
		case line := <-fatal:
			return fmt.Errorf("jobs: embedded NATS did not start: %s", line)
		case <-deadline.C:
			return fmt.Errorf("jobs: embedded NATS not ready after %s", e.readyTimeout)
		case <-poll.C:
		}
	}
	// Listening: the rest (routes, gateways and the like, none here) at once.
	if !srv.ReadyForConnections(e.readyTimeout) {
		return fmt.Errorf("jobs: embedded NATS not ready after %s", e.readyTimeout)
	}
	return nil
}

// stopServer stops the current server and waits until it has stopped,
// its goroutines with it; its clients see the connection drop.
func (e *Embedded) stopServer() error {
	srv := e.server()
	awaitAPIRequests(srv, apiDrainBound, e.log)
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}

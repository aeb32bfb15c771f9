package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connAttack opens n raw TCP connections to the gateway, spread over
// `addrs` attacker addresses, writes each one's opening bytes, then lets
// `during` misbehave until ctx ends; a reader per connection records what
// the gateway did with it: answered (and how), closed silently, or still
// held open when the attack ended.
type connAttack struct {
	n, addrs int
	open     func(i int) []byte                                              // opening bytes of connection i
	during   func(ctx context.Context, c net.Conn, sent *atomic.Int64) error // nil: stall
	rcvBuf   int                                                             // > 0: shrink the receive buffer (slow reader)
	readSlow bool                                                            // read the answer 64 bytes per 100ms
}

// connResult is how one attack connection ended.
type connResult struct {
	dialed, held bool
	sent         int64
	o            outcome
	why          string
	answered     bool
}

func (a connAttack) run(ctx context.Context, target string, row *Row, t *tally) {
	results := make([]connResult, a.n)
	var wg sync.WaitGroup
	// Connections are dialed one after another (each goroutine signals
	// when its dial is done), so the ramp is as fast as the gateway
	// accepts and the listen backlog never overflows.
	for i := range a.n {
		if ctx.Err() != nil {
			break
		}
		dialed := make(chan struct{})
		wg.Go(func() {
			results[i] = a.one(ctx, target, i, func() { close(dialed) })
		})
		<-dialed
	}
	wg.Wait()
	var bytes int64
	for _, r := range results {
		if !r.dialed {
			continue
		}
		row.AttackConns++
		bytes += r.sent
		if r.held {
			row.AttackHeld++
			continue
		}
		t.add(r.o, 0, r.why)
	}
	if row.AttackConns > 0 {
		row.BytesEach = bytes / int64(row.AttackConns)
	}
	t.mu.Lock()
	t.sent = row.AttackConns
	t.mu.Unlock()
}

func (a connAttack) one(ctx context.Context, target string, i int, dialed func()) connResult {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attackerIP(i % max(a.addrs, 1))}, Timeout: 5 * time.Second}
	if a.rcvBuf > 0 {
		d.Control = setRcvBuf(a.rcvBuf)
	}
	c, err := d.DialContext(ctx, "tcp", target)
	dialed()
	if err != nil {
		return connResult{} // refused at connect: not admitted
	}
	var sent atomic.Int64
	var closing atomic.Bool
	answered := make(chan connResult, 1)
	go func() { answered <- a.readAnswer(c, &closing) }()

	if b := a.open(i); len(b) > 0 {
		n, _ := c.Write(b)
		sent.Add(int64(n))
	}
	duringDone := make(chan struct{})
	if a.during != nil {
		go func() { defer close(duringDone); a.during(ctx, c, &sent) }()
	} else {
		close(duringDone)
	}
	var r connResult
	select {
	case r = <-answered:
		closing.Store(true)
		c.Close() // also ends during's writes
		r.dialed = true
	case <-ctx.Done():
		closing.Store(true)
		c.Close()
		<-answered
		r = connResult{dialed: true, held: true}
	}
	<-duringDone
	r.sent = sent.Load()
	return r
}

// readAnswer reads the gateway's answer on c: an HTTP response classified
// like any client would, or a silent close.
func (a connAttack) readAnswer(c net.Conn, closing *atomic.Bool) connResult {
	var r io.Reader = c
	if a.readSlow {
		r = &slowReader{c: c}
	}
	br := bufio.NewReader(r)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if closing.Load() {
			return connResult{}
		}
		return connResult{answered: true, o: unannounced, why: "attack connection closed without an answer"}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil && closing.Load() {
		return connResult{} // still reading when the attack ended: held
	}
	if resp.StatusCode < 300 {
		if err != nil {
			return connResult{answered: true, o: unannounced, why: "attack answer cut: " + errString(err)}
		}
		return connResult{answered: true, o: served}
	}
	if ok, why := announcedError(resp.StatusCode, resp.Header, body); !ok {
		return connResult{answered: true, o: unannounced, why: why}
	}
	return connResult{answered: true, o: refused}
}

// slowReader reads at most 64 bytes per 100ms: a client on a bad link.
type slowReader struct{ c net.Conn }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Millisecond)
	return s.c.Read(p[:min(len(p), 64)])
}

func errString(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return fmt.Sprint(err)
}

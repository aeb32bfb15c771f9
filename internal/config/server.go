package config

import (
	"strings"
	"time"
)

// Server bounds what clients can make the gateway hold: connections,
// header and body bytes, and time. The defaults follow nginx
// (client_body_timeout, send_timeout, keepalive_timeout) and Envoy's
// overload limits, sized for one gateway in front of a pool of GPUs.
type Server struct {
	// MaxConnections caps client connections at once; past it new
	// connections are answered 503 by the refusal tier, or closed at
	// accept when that is full too. Default 10000.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps connections from one client address (an
	// IPv4 address, or an IPv6 /64). Default 1000; 0 = no per-address cap.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// RefusalConnections caps the connections over the two caps above
	// that are answered at once (nginx limit_conn's 503, with
	// Retry-After); past it they are closed at accept. Default 1024;
	// 0 closes every over-cap connection at accept.
	RefusalConnections int `yaml:"refusal_connections"`
	// RefusalHeadTimeout is how long the refusal tier waits for a
	// request head before it answers anyway. Default 1s.
	RefusalHeadTimeout Duration `yaml:"refusal_head_timeout"`
	// RefusalHeadBytes is the most head bytes the refusal tier reads
	// before it answers anyway, and each of its connections' buffer.
	// Default 4KiB.
	RefusalHeadBytes ByteSize `yaml:"refusal_head_bytes"`
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// MaxHeaderBytes bounds a request's header block. Default 64KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// IdleTimeout closes a keep-alive connection idle this long. Default 75s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// BodyReadTimeout is the longest gap between two reads of a request
	// body (nginx client_body_timeout); past it the request gets 408.
	// Default 60s.
	BodyReadTimeout Duration `yaml:"body_read_timeout"`
	// BodyTotalTimeout bounds reading a whole request body. Default 5m.
	BodyTotalTimeout Duration `yaml:"body_total_timeout"`
	// Discard bounds reading and dropping the rest of a body after an
	// answer given before it was read (a 401, 404, 413 ...): the
	// connection is kept when the rest arrives within them (nginx's
	// discard of a refused body), else it closes, lingering.
	Discard ServerDiscard `yaml:"discard"`
	// Linger bounds the lingering close of a connection answered while
	// its client was still sending (nginx lingering_close): the rest is
	// read and dropped before the close, so the client reads its answer
	// before any reset.
	Linger ServerLinger `yaml:"linger"`
	// MaxBodyMemory bounds the bytes held in request bodies across all
	// connections; past it new uploads get 503 with Retry-After. At
	// least the larger of max_body_bytes and max_audio_body_bytes, so
	// one body within its bound always fits (a file that leaves
	// max_audio_body_bytes unset gets it lowered to this). Default 256MiB.
	MaxBodyMemory ByteSize `yaml:"max_body_memory"`
	// SendTimeout cuts a client that accepts no response bytes for this
	// long (nginx send_timeout). Default 60s.
	SendTimeout Duration `yaml:"send_timeout"`
	// ResponseReadahead is how much of one answer the gateway reads ahead
	// of a slow client (nginx proxy_buffering, bounded): an answer that
	// fits is read off the backend at the backend's pace, which then frees
	// its slot while the client keeps reading. A larger one falls back to
	// back-pressure (the backend waits for the client). Default 256KiB;
	// 0 = off; else at least 16KiB (one block).
	ResponseReadahead ByteSize `yaml:"response_readahead"`
	// MaxReadaheadMemory bounds the bytes read ahead across all responses;
	// past it answers fall back to back-pressure. Default 256MiB.
	MaxReadaheadMemory ByteSize `yaml:"max_readahead_memory"`
	// MemoryLimit is the Go runtime's soft memory limit
	// (debug.SetMemoryLimit); 0 leaves the runtime's default. Default 0.
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// ServerDiscard bounds the read of a refused body's rest after its answer
// (netguard.Discard), named as the body's own bounds are: a client that
// sent its body before reading the answer has the rest in flight, so only
// a stalled or very slow one waits them out, each holding a connection
// and a handler's goroutine.
type ServerDiscard struct {
	// MaxBytes is the most of the rest read and dropped; a declared
	// length over it, or a rest past it, closes the connection.
	// Default 256KiB (net/http's own bound).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// ReadTimeout is the longest gap between two reads of the rest.
	// Default 1s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// TotalTimeout bounds reading the whole rest. Default 5s.
	TotalTimeout Duration `yaml:"total_timeout"`
}

// ServerLinger bounds a lingering close (netguard.Linger; nginx
// lingering_time, lingering_timeout), named as the discard's bounds are.
// Each lingering connection keeps its slot under the connection caps and
// a goroutine with a pooled 16 KiB buffer, so these bound how long a
// stalled client holds them, not memory.
type ServerLinger struct {
	// MaxBytes is the most read and dropped from one connection after
	// its answer, the discard's bytes (server.discard) included: one
	// budget, so at least server.discard.max_bytes. Default 64MiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// ReadTimeout is the longest wait for the client's next bytes,
	// counted from its last ones (nginx lingering_timeout). Default 5s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// TotalTimeout bounds the whole close from the answer, the
	// discard's wait included (nginx lingering_time). Default 30s.
	TotalTimeout Duration `yaml:"total_timeout"`
}

// Admin is the separate listener for privileged surfaces: /status,
// /metrics, /spare, pprof and the dashboard. It listens on loopback by
// default so nothing about tenants or backends reaches the public side.
type Admin struct {
	// Listen is the admin address; default 127.0.0.1:9091. "off" disables it.
	Listen string `yaml:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every admin request; ${VAR} expanded.
	Token string `yaml:"token"`
	// WorkerToken, when set, is the separate workers' credential: the
	// worker routes (/worker/v1/queue, which hands out the NATS URL with
	// its password, and /worker/v1/…, which runs requests as any tenant)
	// take it and not admin.token, so that whoever holds the dashboard's
	// token cannot reach the queue or act as a tenant; /spare takes
	// either. Unset: admin.token is the workers' credential too (as
	// before). ${VAR} expanded.
	WorkerToken string `yaml:"worker_token"`
	// Pprof serves Go's /debug/pprof on the admin listener. Default false.
	Pprof bool `yaml:"pprof"`
	// MaxConnections caps the admin listener's connections at once, as
	// server.max_connections does the public one's: past it a connection
	// gets the listener's refusal tier's 503 naming admin.max_connections,
	// logged (with log.access) marked listener=admin. Scrapers and an
	// operator need a handful; a peer that opens connections and sends
	// nothing would otherwise hold file descriptors without bound, each
	// for up to 10 s (its ReadHeaderTimeout). Default 64; a reload applies it.
	MaxConnections int `yaml:"max_connections"`
}

func defaultServer() Server {
	return Server{
		MaxConnections:      10000,
		MaxConnectionsPerIP: 1000,
		RefusalConnections:  1024,
		RefusalHeadTimeout:  Duration(time.Second),
		RefusalHeadBytes:    4 << 10,
		ReadHeaderTimeout:   Duration(10 * time.Second),
		MaxHeaderBytes:      64 << 10,
		IdleTimeout:         Duration(75 * time.Second),
		BodyReadTimeout:     Duration(60 * time.Second),
		BodyTotalTimeout:    Duration(5 * time.Minute),
		Discard:             ServerDiscard{MaxBytes: 256 << 10, ReadTimeout: Duration(time.Second), TotalTimeout: Duration(5 * time.Second)},
		Linger:              ServerLinger{MaxBytes: 64 << 20, ReadTimeout: Duration(5 * time.Second), TotalTimeout: Duration(30 * time.Second)},
		MaxBodyMemory:       256 << 20,
		SendTimeout:         Duration(60 * time.Second),
		ResponseReadahead:   256 << 10,
		MaxReadaheadMemory:  256 << 20,
	}
}

func defaultAdmin() Admin { return Admin{Listen: "127.0.0.1:9091", MaxConnections: 64} }

func (c *Config) validateServer(bad func(key, format string, args ...any)) {
	s := c.Server
	if s.MaxConnections < 1 {
		bad("server.max_connections", "must be at least 1, got %d", s.MaxConnections)
	}
	if s.MaxConnectionsPerIP < 0 {
		bad("server.max_connections_per_ip", "must be 0 (no cap) or positive, got %d", s.MaxConnectionsPerIP)
	}
	if s.RefusalConnections < 0 {
		bad("server.refusal_connections", "must be 0 (close over-cap connections at accept) or positive, got %d", s.RefusalConnections)
	}
	if s.RefusalHeadBytes < 256 || s.RefusalHeadBytes > 64<<10 {
		bad("server.refusal_head_bytes", "must be between 256B and 64KiB, got %d", s.RefusalHeadBytes)
	}
	for _, t := range []struct {
		key string
		d   Duration
	}{
		{"server.read_header_timeout", s.ReadHeaderTimeout}, {"server.idle_timeout", s.IdleTimeout},
		{"server.body_read_timeout", s.BodyReadTimeout}, {"server.body_total_timeout", s.BodyTotalTimeout},
		{"server.send_timeout", s.SendTimeout}, {"server.refusal_head_timeout", s.RefusalHeadTimeout},
		{"server.discard.read_timeout", s.Discard.ReadTimeout}, {"server.discard.total_timeout", s.Discard.TotalTimeout},
		{"server.linger.read_timeout", s.Linger.ReadTimeout}, {"server.linger.total_timeout", s.Linger.TotalTimeout},
	} {
		if t.d <= 0 {
			bad(t.key, "must be a positive duration, got %s", time.Duration(t.d))
		}
	}
	if s.Discard.MaxBytes < 1 {
		bad("server.discard.max_bytes", "must be positive, got %d", s.Discard.MaxBytes)
	}
	// One budget across the discard and the lingering close after it.
	if s.Linger.MaxBytes < s.Discard.MaxBytes {
		bad("server.linger.max_bytes", "must be at least server.discard.max_bytes (%d): the discard's bytes count toward it; got %d", s.Discard.MaxBytes, s.Linger.MaxBytes)
	}
	if s.MaxHeaderBytes < 1<<10 || s.MaxHeaderBytes > 16<<20 {
		bad("server.max_header_bytes", "must be between 1KiB and 16MiB, got %d", s.MaxHeaderBytes)
	}
	// One body within its bound must fit in the budget, else it could
	// never be read: at least the larger of the two bounds.
	largest, key := c.MaxBodyBytes, "max_body_bytes"
	if c.MaxAudioBodyBytes > largest {
		largest, key = c.MaxAudioBodyBytes, "max_audio_body_bytes"
	}
	if s.MaxBodyMemory < largest {
		bad("server.max_body_memory", "must be at least %s (%d), the larger body bound; got %d", key, largest, s.MaxBodyMemory)
	}
	// 16KiB is the read-ahead's block (proxy.MinReadahead).
	if r := s.ResponseReadahead; r != 0 && (r < 16<<10 || r > 1<<30) {
		bad("server.response_readahead", "must be 0 (off) or between 16KiB and 1GiB, got %d", r)
	}
	if s.MaxReadaheadMemory < s.ResponseReadahead {
		bad("server.max_readahead_memory", "must be at least server.response_readahead (%d), got %d", s.ResponseReadahead, s.MaxReadaheadMemory)
	}
	if s.MemoryLimit < 0 {
		bad("server.memory_limit", "must be 0 (runtime default) or positive")
	}
	if w := c.Admin.WorkerToken; w != "" && w == c.Admin.Token {
		bad("admin.worker_token", "is the same as admin.token: give the workers a credential of their own, or leave it unset (admin.token is then theirs too)")
	}
	if w := c.Admin.WorkerToken; w != "" && strings.TrimSpace(w) != w {
		bad("admin.worker_token", "has leading or trailing whitespace (a bearer credential is sent without it)")
	}
	if c.Admin.MaxConnections < 1 {
		bad("admin.max_connections", "must be at least 1, got %d", c.Admin.MaxConnections)
	}
	if a := c.Admin.Listen; a != "off" {
		if problem := listenAddrProblem(a, "127.0.0.1:9091"); problem != "" {
			bad("admin.listen", "want host:port or \"off\", got %q (%s)", a, problem)
		}
	}
}

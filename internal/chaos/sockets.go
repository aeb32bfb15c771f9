package chaos

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// fdEntry is one of the child's open file descriptors.
type fdEntry struct {
	target string     // what it points at: "socket:[123]", "pipe:[4]", "/path"
	tcp    *tcpSocket // set when it is an IPv4 TCP socket
}

// tcpSocket is a row of /proc/PID/net/tcp.
type tcpSocket struct {
	local, remote string // "127.0.0.1:40123"
	state         string // hex TCP state: "01" established, "0A" listen, "08" close-wait
}

const (
	tcpEstablished = "01"
	tcpListen      = "0A"
)

// readFDs reads the child's fd table once and resolves its IPv4 TCP
// sockets through /proc/PID/net/tcp, so that every count of one sample
// comes from the same instant. A socket not in that table is IPv6, UDP,
// unix, netlink, or a TCP socket the kernel no longer hashes (reset or
// closed by the peer and not yet closed by the process, or not yet
// connected).
func readFDs(pid int) ([]fdEntry, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read fds: %w", err)
	}
	out := make([]fdEntry, 0, len(ents))
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed since the directory was read
		}
		out = append(out, fdEntry{target: l})
	}
	tcp, err := tcpTable(pid)
	if err != nil {
		return nil, err
	}
	for i, e := range out {
		if ino, ok := strings.CutPrefix(e.target, "socket:["); ok {
			if s, ok := tcp[strings.TrimSuffix(ino, "]")]; ok {
				out[i].tcp = &s
			}
		}
	}
	return out, nil
}

// tcpTable maps socket inodes to rows of the child's /proc/PID/net/tcp.
func tcpTable(pid int) (map[string]tcpSocket, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, fmt.Errorf("read tcp table: %w", err)
	}
	defer f.Close()
	out := map[string]tcpSocket{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[9] == "0" {
			continue
		}
		out[fl[9]] = tcpSocket{local: hexAddr(fl[1]), remote: hexAddr(fl[2]), state: fl[3]}
	}
	return out, sc.Err()
}

// hexAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080".
func hexAddr(h string) string {
	ip, port, ok := strings.Cut(h, ":")
	a, err1 := strconv.ParseUint(ip, 16, 32)
	p, err2 := strconv.ParseUint(port, 16, 16)
	if !ok || err1 != nil || err2 != nil || len(ip) != 8 {
		return h
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", byte(a), byte(a>>8), byte(a>>16), byte(a>>24), p)
}

// fdAccount is one sample's fds sorted into what the leak target counts
// and what it leaves out, with why.
type fdAccount struct {
	Total    int // every open fd
	Observer int // the harness' own health-check and /metrics connections
	Pooled   int // keep-alive connections to the backends
	Store    int // established connections to the Redis nodes, one per node

	Peers map[string]int // TCP sockets by "local>remote" ("listen" for listeners), the observer's left out
	Files map[string]int // the other fds by kind
}

// Counted is what the leak target compares.
func (a fdAccount) Counted() int { return a.Total - a.Observer - a.Pooled - a.Store }

// fdRules say which sockets are not the gateway's own growth.
type fdRules struct {
	// observer reports whether remote is one of the harness' own
	// connections to the gateway: the measurement, not the measured.
	observer func(remote string) bool
	// backends are the pool's ports on 127.0.0.1: the gateway's
	// keep-alive pool to them is a bounded cache (idle connections are
	// closed after 90s), one fd per connection (its goroutines, which
	// only net/http's transport has, are counted by stack: goroutines.go).
	backends map[int]bool
	// store are the Redis nodes' addresses. The gateway's one client
	// for them (rueidis; the rate limits' store and the Responses ids
	// share it, internal/redisconn.Clients) keeps one multiplexed
	// connection to each node it has used: to a Cluster's masters at first, and after a failover to the
	// promoted replica and to the nodes it asked for the new topology.
	// That is bounded by the cluster's size, so one established
	// connection per node is left out; a second one to the same node, or
	// one left in close-wait to a dead node, is counted.
	store map[string]bool
}

func (r fdRules) account(fds []fdEntry) fdAccount {
	a := fdAccount{Total: len(fds), Peers: map[string]int{}, Files: map[string]int{}}
	storeSeen := map[string]bool{}
	for _, e := range fds {
		s := e.tcp
		switch {
		case s == nil:
			kind := e.target
			if strings.HasPrefix(kind, "socket:") {
				kind = "socket (not IPv4 TCP)"
			} else if i := strings.IndexByte(kind, ':'); i > 0 && !strings.HasPrefix(kind, "/") {
				kind = kind[:i] // pipe:[123] -> pipe, anon_inode:[eventpoll] -> anon_inode
			}
			a.Files[kind]++
			continue
		case s.state == tcpListen:
			a.Peers["listen"]++
			continue
		case r.observer != nil && r.observer(s.remote):
			a.Observer++
			continue
		}
		a.Peers[s.local+">"+s.remote]++
		host, port, _ := strings.Cut(s.remote, ":")
		p, _ := strconv.Atoi(port)
		switch {
		case host == "127.0.0.1" && r.backends[p]:
			a.Pooled++
		case r.store[s.remote] && s.state == tcpEstablished && !storeSeen[s.remote]:
			storeSeen[s.remote] = true
			a.Store++
		}
	}
	return a
}

// peerGrowth describes which peers have more sockets after than before,
// to point a failed leak target at its cause.
// Accepted sockets (local address one of the gateway's listeners, named
// in names) are grouped by listener and client address; outbound ones by
// their remote address, named when names knows it.
func peerGrowth(before, after map[string]int, names map[string]string) string {
	group := func(m map[string]int) map[string]int {
		out := map[string]int{}
		for key, n := range m {
			local, remote, _ := strings.Cut(key, ">")
			host, _, _ := strings.Cut(remote, ":")
			switch {
			case key == "listen":
			case names[local] != "":
				key = names[local] + " clients on " + host
			case names[remote] != "":
				key = names[remote]
			default:
				key = remote
			}
			out[key] += n
		}
		return out
	}
	b, a := group(before), group(after)
	var parts []string
	for peer, n := range a {
		if d := n - b[peer]; d > 0 {
			parts = append(parts, fmt.Sprintf("+%d %s", d, peer))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// countGrowth lists the keys with more after than before.
func countGrowth(before, after map[string]int) string {
	var parts []string
	for k, n := range after {
		if d := n - before[k]; d > 0 {
			parts = append(parts, fmt.Sprintf("+%d %s", d, k))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

package chaos

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// pooledUpstream counts the child's TCP sockets connected to one of
// ports on loopback: its keep-alive pool to the backends. The pool is a
// bounded cache (net/http closes idle connections after 90s), not a leak,
// so the leak target leaves it out: one fd and two transport goroutines
// (net/http's readLoop and writeLoop) per pooled connection.
func pooledUpstream(pid int, ports map[int]bool) (int, error) {
	peers, err := socketPeers(pid)
	if err != nil {
		return 0, err
	}
	n := 0
	for key, c := range peers {
		_, peer, _ := strings.Cut(key, ">")
		if host, port, ok := strings.Cut(peer, ":"); ok && host == "127.0.0.1" {
			if p, err := strconv.Atoi(port); err == nil && ports[p] {
				n += c
			}
		}
	}
	return n, nil
}

// socketPeers counts the child's TCP sockets by "local>remote" address
// ("127.0.0.1:40123>127.0.0.1:4222"); listening sockets are "listen".
// Only IPv4 loopback matters to the harness.
func socketPeers(pid int) (map[string]int, error) {
	inodes := map[string]bool{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read fds: %w", err)
	}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, fmt.Errorf("read tcp table: %w", err)
	}
	defer f.Close()
	peers := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || !inodes[fl[9]] {
			continue
		}
		if fl[3] == "0A" { // TCP_LISTEN
			peers["listen"]++
			continue
		}
		peers[hexAddr(fl[1])+">"+hexAddr(fl[2])]++
	}
	return peers, sc.Err()
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

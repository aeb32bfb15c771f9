package chaos

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// pooledUpstream counts the child's TCP sockets connected to one of
// ports on loopback: its keep-alive pool to the backends. The pool is a
// bounded cache (net/http closes idle connections after 90s), not a leak,
// so the leak target leaves it out: one fd and two transport goroutines
// (net/http's readLoop and writeLoop) per pooled connection.
func pooledUpstream(pid int, ports map[int]bool) (int, error) {
	inodes := map[string]bool{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read fds: %w", err)
	}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, fmt.Errorf("read tcp table: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || !inodes[fl[9]] {
			continue
		}
		rem := strings.SplitN(fl[2], ":", 2)
		if len(rem) != 2 || rem[0] != "0100007F" { // 127.0.0.1, little-endian hex
			continue
		}
		port, err := strconv.ParseInt(rem[1], 16, 32)
		if err == nil && ports[int(port)] {
			n++
		}
	}
	return n, sc.Err()
}

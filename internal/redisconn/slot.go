package redisconn

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the
// key, or of its hash tag (the text between the first '{' and the first
// '}' after it, when not empty), mod 16384, as the Cluster spec says and
// CLUSTER KEYSLOT answers.
func KeySlot(key string) uint16 {
	if s := indexByte(key, '{'); s >= 0 {
		if e := indexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return crc16(key) % clusterSlots
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16Table is CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the
// checksum Redis Cluster hashes keys with.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(s string) uint16 {
	var c uint16
	for i := 0; i < len(s); i++ {
		c = c<<8 ^ crc16Table[byte(c>>8)^s[i]]
	}
	return c
}

// slotRange is a range of slots [start, end] a Cluster master serves.
type slotRange struct {
	start, end uint16
	node       string // the master's host:port, as CLUSTER SLOTS names it
}

// slotMap is a Cluster's slot ranges sorted by start.
type slotMap []slotRange

// node is the master serving slot, "" when the map has none.
func (m slotMap) node(slot uint16) string {
	i := sort.Search(len(m), func(i int) bool { return m[i].end >= slot })
	if i < len(m) && m[i].start <= slot {
		return m[i].node
	}
	return ""
}

// ranges is node's slot ranges as text ("0-5460,10923-10999"), for logs.
func (m slotMap) ranges(node string) string {
	var b []byte
	for _, r := range m {
		if r.node != node {
			continue
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(r.start), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(r.end), 10)
	}
	return string(b)
}

var errSlotsReply = errors.New("unexpected CLUSTER SLOTS reply")

// parseClusterSlots reads a CLUSTER SLOTS reply, as rueidis' ToAny gives
// it ([]any of [start, end, [host, port, ...], replicas...], integers as
// int64, strings as string): each range and its master. Ranges outside
// the slots or out of order are refused; a master without a host (the
// reply's "" or "?" for the node asked) is named by its port alone.
func parseClusterSlots(v any) (slotMap, error) {
	rows, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: not an array", errSlotsReply)
	}
	m := make(slotMap, 0, len(rows))
	for i, row := range rows {
		f, ok := row.([]any)
		if !ok || len(f) < 3 {
			return nil, fmt.Errorf("%w: range %d: not [start, end, master, ...]", errSlotsReply, i)
		}
		start, ok1 := f[0].(int64)
		end, ok2 := f[1].(int64)
		if !ok1 || !ok2 || start < 0 || end < start || end >= clusterSlots {
			return nil, fmt.Errorf("%w: range %d: slots %v-%v", errSlotsReply, i, f[0], f[1])
		}
		master, ok := f[2].([]any)
		if !ok || len(master) < 2 {
			return nil, fmt.Errorf("%w: range %d: master not [host, port, ...]", errSlotsReply, i)
		}
		host, ok1 := master[0].(string)
		port, ok2 := master[1].(int64)
		if !ok1 || !ok2 || port < 0 || port > 65535 {
			return nil, fmt.Errorf("%w: range %d: master %v:%v", errSlotsReply, i, master[0], master[1])
		}
		if host == "?" {
			host = ""
		}
		m = append(m, slotRange{start: uint16(start), end: uint16(end), node: net.JoinHostPort(host, strconv.FormatInt(port, 10))})
	}
	sort.Slice(m, func(i, j int) bool { return m[i].start < m[j].start })
	for i := 1; i < len(m); i++ {
		if m[i].start <= m[i-1].end {
			return nil, fmt.Errorf("%w: ranges %d-%d and %d-%d overlap", errSlotsReply, m[i-1].start, m[i-1].end, m[i].start, m[i].end)
		}
	}
	return m, nil
}

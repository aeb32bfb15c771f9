package redisconn

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// NodeBypass is a Bypass per Redis Cluster master, over the Bypass for the
// whole Redis: a master that fails (killed, failing over, hung) puts only
// the keys whose slots it serves in the failure mode, and the keys on the
// other masters are still served. A single Redis (not a Cluster client)
// has the whole-Redis Bypass alone, unchanged.
//
// The slot of a key is computed (KeySlot); the master of a slot is read
// from CLUSTER SLOTS, asked in the background when a Cluster client is
// first seen and again (at most once per refreshEvery) after a failure, so
// that a failover or a resharding moves keys to their new master's
// bypass. Until the map is known, and for a call whose keys live on more
// than one master, the whole-Redis Bypass decides, as before.
//
// A hung Cluster must still cost one timeout per probe interval, not one
// per master: when two masters are bypassed at once, the whole Redis is
// too (the failure is not one master's), and its probe decides for every
// key until it finds Redis back. Safe for concurrent use.
type NodeBypass struct {
	whole *Bypass
	opt   BypassOptions
	gauge prometheus.Gauge // masters bypassed now; nil: not kept

	ctx    context.Context // ends at Close: stops a refresh under way
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	slots      slotMap
	asked      bool      // the map was asked for
	askedAt    time.Time // when, on the callers' clock (zero: at the first call)
	refreshing bool
	nodes      map[string]*Bypass
}

// refreshEvery spaces the CLUSTER SLOTS asked after failures;
// refreshTimeout bounds one.
const (
	refreshEvery   = time.Second
	refreshTimeout = 2 * time.Second
)

// escalateAt is how many masters bypassed at once bypass the whole Redis.
const escalateAt = 2

// NewNodeBypass returns a NodeBypass whose bypasses (the whole Redis' and
// each master's) have opt; a master's lines carry its address and slot
// ranges (redis_node, slots), never a key. nodes, when set, is the number
// of masters bypassed now.
func NewNodeBypass(opt BypassOptions, nodes prometheus.Gauge) *NodeBypass {
	ctx, cancel := context.WithCancel(context.Background())
	return &NodeBypass{whole: NewBypass(opt), opt: opt, gauge: nodes, ctx: ctx, cancel: cancel, nodes: map[string]*Bypass{}}
}

// Down reports whether the whole Redis is bypassed now.
func (n *NodeBypass) Down() bool { return n.whole.Down() }

// Close stops a slot map refresh under way and waits for it.
func (n *NodeBypass) Close() {
	n.mu.Lock() // refresh checks the context and joins wg under it: none joins after this
	n.cancel()
	n.mu.Unlock()
	n.wg.Wait()
}

// Admit is Bypass.Admit for a call on keys through client (nil: not
// connected; the whole-Redis Bypass decides).
func (n *NodeBypass) Admit(now time.Time, client rueidis.Client, keys ...string) (Call, time.Duration, bool) {
	node := n.nodeOf(client, keys)
	if node == "" || n.whole.Down() {
		c, retry, ok := n.whole.Admit(now)
		if ok {
			c.nb, c.client = n, client
		}
		return c, retry, ok
	}
	c, retry, ok := n.node(node).Admit(now)
	if !ok {
		// The master is bypassed: keep the map fresh meanwhile, so that
		// its slots move to the replica promoted in its place as soon as
		// the Cluster says so (only the bypass' own probes would
		// otherwise ask, after a back-off growing to 10 s).
		n.refresh(now, client)
		return c, retry, ok
	}
	c.nb, c.client = n, client
	return c, retry, ok
}

// nodeOf is the master serving every one of keys, "" when not a Cluster,
// the map is not known yet (it is then asked for), or the keys span
// masters.
func (n *NodeBypass) nodeOf(client rueidis.Client, keys []string) string {
	if client == nil || len(keys) == 0 || client.Mode() != rueidis.ClientModeCluster {
		return ""
	}
	n.mu.Lock()
	slots := n.slots
	n.mu.Unlock()
	if slots == nil {
		n.refresh(time.Time{}, client)
		return ""
	}
	node := slots.node(KeySlot(keys[0]))
	for _, k := range keys[1:] {
		if slots.node(KeySlot(k)) != node {
			return ""
		}
	}
	return node
}

// node is the master's bypass, made on first use.
func (n *NodeBypass) node(addr string) *Bypass {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.nodes[addr]
	if b == nil {
		opt := n.opt
		opt.Gauge, opt.OnRecover = nil, n.opt.OnRecover
		opt.Attrs = append(append([]any{}, n.opt.Attrs...), "redis_node", addr, "slots", n.slots.ranges(addr))
		b = NewBypass(opt)
		n.nodes[addr] = b
	}
	return b
}

// failed follows a call that failed for Redis' sake: the map is asked for
// again (a failover or a resharding may have moved the slots), and when a
// master's bypass started, enough masters bypassed bypass the whole Redis.
func (n *NodeBypass) failed(now time.Time, c Call, err error, bypassed bool) {
	n.refresh(now, c.client)
	if c.b == n.whole || !bypassed {
		return
	}
	if n.countDown() >= escalateAt && !n.whole.Down() {
		n.whole.trip(now, err)
	}
}

// countDown counts the masters bypassed now and sets the gauge.
func (n *NodeBypass) countDown() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	down := 0
	for _, b := range n.nodes {
		if b.Down() {
			down++
		}
	}
	if n.gauge != nil {
		n.gauge.Set(float64(down))
	}
	return down
}

// refresh asks client for the slot map in the background, unless one is
// under way or was asked for within refreshEvery of now (a zero now: only
// when none was ever asked for).
func (n *NodeBypass) refresh(now time.Time, client rueidis.Client) {
	if client == nil || client.Mode() != rueidis.ClientModeCluster {
		return
	}
	n.mu.Lock()
	if n.refreshing || (n.asked && (now.IsZero() || now.Sub(n.askedAt) < refreshEvery)) || n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	n.refreshing, n.asked, n.askedAt = true, true, now
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, refreshTimeout)
		defer cancel()
		slots := n.askSlots(ctx, client)
		n.mu.Lock()
		n.refreshing = false
		if len(slots) == 0 {
			n.mu.Unlock()
			return // the map known stays; the next failure asks again
		}
		n.slots = slots
		// A master that serves no slot now (a replica took its place) has
		// its bypass dropped: its keys are the new master's, and a failure
		// of theirs is not a second master down.
		var gone []string
		for addr, b := range n.nodes {
			if slots.ranges(addr) == "" {
				delete(n.nodes, addr)
				if b.Down() {
					gone = append(gone, addr)
				}
			}
		}
		n.mu.Unlock()
		for _, addr := range gone {
			n.opt.Logger.Info(n.opt.UpMsg+" (the master's slots moved to another node)", append(append([]any{}, n.opt.Attrs...), "redis_node", addr)...)
		}
		if len(gone) > 0 {
			n.countDown()
		}
	}()
}

// askSlots asks the Cluster's nodes for the slot map, those not bypassed
// first, until one answers; nil when none did within ctx.
func (n *NodeBypass) askSlots(ctx context.Context, client rueidis.Client) slotMap {
	var first, last []rueidis.Client
	for addr, c := range client.Nodes() {
		n.mu.Lock()
		b := n.nodes[addr]
		n.mu.Unlock()
		if b != nil && b.Down() {
			last = append(last, c)
		} else {
			first = append(first, c)
		}
	}
	for _, c := range append(first, last...) {
		if ctx.Err() != nil {
			return nil
		}
		v, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToAny()
		if err != nil {
			continue
		}
		if slots, err := parseClusterSlots(v); err == nil && len(slots) > 0 {
			return slots
		}
	}
	return nil
}

// Group splits keys by the master serving them, as indexes into keys, for
// a caller that sends many keys at once (a batch of writes) and admits
// each master's share on its own: one group of all when client is not a
// Cluster's or the map is not known yet.
func (n *NodeBypass) Group(client rueidis.Client, keys []string) [][]int {
	all := func() [][]int {
		g := make([]int, len(keys))
		for i := range g {
			g[i] = i
		}
		return [][]int{g}
	}
	if client == nil || client.Mode() != rueidis.ClientModeCluster {
		return all()
	}
	n.mu.Lock()
	slots := n.slots
	n.mu.Unlock()
	if slots == nil {
		n.refresh(time.Time{}, client)
		return all()
	}
	var groups [][]int
	at := map[string]int{}
	for i, k := range keys {
		node := slots.node(KeySlot(k))
		j, ok := at[node]
		if !ok {
			j = len(groups)
			at[node] = j
			groups = append(groups, nil)
		}
		groups[j] = append(groups[j], i)
	}
	return groups
}

// Master is the address of the Cluster master serving key, as the slot
// map knows it now: "" when client is not a Cluster's or the map is not
// known yet (it is then asked for). A caller that keeps work per master
// (held writes) groups by it; the master may change by the time the work
// is sent (a failover), and Admit decides by the map then.
func (n *NodeBypass) Master(client rueidis.Client, key string) string {
	if client == nil || client.Mode() != rueidis.ClientModeCluster {
		return ""
	}
	n.mu.Lock()
	slots := n.slots
	n.mu.Unlock()
	if slots == nil {
		n.refresh(time.Time{}, client)
		return ""
	}
	return slots.node(KeySlot(key))
}

package redisconn

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// Clients hands the users of one Redis one client. rueidis multiplexes
// every caller over one pipelined connection per node, so a second client
// to the same Redis (the rate limits' store, the Responses API's shared
// ids and the cache's second level may all use one) only multiplies the
// connections each gateway replica holds on every node, against Redis'
// maxclients, and the reconnects after a Cluster failover. One Redis is
// one set of addresses, database and credentials (clientKey); the client
// is dialled with the options of the user that dials it (Option makes
// them equal but for connect_timeout). The process owns one Clients
// (internal/app); its users reach it through NewSharedLazy.
type Clients struct {
	log   *slog.Logger
	swaps *swapCounts

	mu      sync.Mutex
	clients map[string]*sharedClient
}

// sharedClient is one Redis' client and how many Lazys hold it.
type sharedClient struct {
	client  rueidis.Client
	holders int
	dialing bool
}

// SharedName is the CLIENT SETNAME of the one client per Redis (Option).
const SharedName = "sluice"

// NewClients returns an empty set of shared clients; log gets a client's
// rare events (its Redis no longer offering RESP3: swapClient), nil is
// slog.Default(); reg, when not nil, gets their count
// (sluice_redis_resp2_swaps_total).
func NewClients(log *slog.Logger, reg prometheus.Registerer) *Clients {
	return &Clients{log: log, swaps: newSwapCounts(reg), clients: map[string]*sharedClient{}}
}

// acquire returns the client for opt, dialling it when there is none, and
// counts the caller as a holder. While another caller dials the same
// Redis it fails at once (ErrUnavailable), as a Lazy does for its own
// dial: nobody waits on a dial another started.
func (c *Clients) acquire(opt rueidis.ClientOption) (rueidis.Client, error) {
	key := clientKey(opt)
	c.mu.Lock()
	sc := c.clients[key]
	switch {
	case sc != nil && sc.client != nil:
		sc.holders++
		c.mu.Unlock()
		return sc.client, nil
	case sc != nil && sc.dialing:
		c.mu.Unlock()
		return nil, errAnotherDials
	}
	sc = &sharedClient{dialing: true}
	c.clients[key] = sc
	c.mu.Unlock()

	client, err := dial(opt, c.log, c.swaps)

	c.mu.Lock()
	defer c.mu.Unlock()
	sc.dialing = false
	if err != nil {
		delete(c.clients, key)
		return nil, err
	}
	sc.client = client
	sc.holders = 1
	return client, nil
}

// release drops one holder of opt's client, closing it with the last.
func (c *Clients) release(opt rueidis.ClientOption, client rueidis.Client) {
	key := clientKey(opt)
	c.mu.Lock()
	sc := c.clients[key]
	if sc == nil || sc.client != client {
		c.mu.Unlock()
		client.Close() // not one of ours: never shared
		return
	}
	sc.holders--
	if sc.holders > 0 {
		c.mu.Unlock()
		return
	}
	delete(c.clients, key)
	c.mu.Unlock()
	client.Close()
}

// Open is the number of clients held open (for tests and diagnostics).
func (c *Clients) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, sc := range c.clients {
		if sc.client != nil {
			n++
		}
	}
	return n
}

// clientKey says which options reach the same Redis: the seed addresses
// (in any order: a Cluster's seeds are a set), the database and the
// credentials. Everything else Option sets is the same for every user
// (the connect timeout aside, which only bounds a dial).
func clientKey(o rueidis.ClientOption) string {
	addrs := slices.Clone(o.InitAddress)
	slices.Sort(addrs)
	return fmt.Sprintf("%q|%q|%q|%d", strings.Join(addrs, ","), o.Username, o.Password, o.SelectDB)
}

// Holders is the number of Lazys holding one of the clients.
func (c *Clients) Holders() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, sc := range c.clients {
		n += sc.holders
	}
	return n
}

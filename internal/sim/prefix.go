package sim

// prefixCache is an LRU set of block hashes, like vLLM's automatic prefix
// caching: a prompt whose first k full blocks are cached skips their
// prefill. It is owned by the engine goroutine and needs no lock.
type prefixCache struct {
	capacity int
	nodes    map[uint64]*lruNode
	head     lruNode // sentinel: head.next is the most recently used
}

type lruNode struct {
	key        uint64
	prev, next *lruNode
}

func newPrefixCache(capacity int) *prefixCache {
	c := &prefixCache{capacity: capacity, nodes: make(map[uint64]*lruNode)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// lookup returns how many leading prompt tokens are cached. The chain stops
// at the first missing block because a block's hash covers all earlier
// words. Like vLLM it always leaves at least one token to compute, since
// the first output token needs a forward pass.
func (c *prefixCache) lookup(blocks []uint64, blockSize, promptTokens int) int {
	n := 0
	for _, b := range blocks {
		node, ok := c.nodes[b]
		if !ok {
			break
		}
		c.moveToFront(node)
		n++
	}
	return min(n*blockSize, max(promptTokens-1, 0))
}

// insert records blocks after their prefill, evicting least recently used.
func (c *prefixCache) insert(blocks []uint64) {
	for _, b := range blocks {
		if node, ok := c.nodes[b]; ok {
			c.moveToFront(node)
			continue
		}
		var node *lruNode
		if len(c.nodes) >= c.capacity {
			node = c.head.prev // recycle the evicted node
			c.unlink(node)
			delete(c.nodes, node.key)
		} else {
			node = new(lruNode)
		}
		node.key = b
		c.nodes[b] = node
		c.pushFront(node)
	}
}

func (c *prefixCache) len() int { return len(c.nodes) }

func (c *prefixCache) moveToFront(n *lruNode) {
	c.unlink(n)
	c.pushFront(n)
}

func (c *prefixCache) unlink(n *lruNode) {
	n.prev.next = n.next
	n.next.prev = n.prev
}

func (c *prefixCache) pushFront(n *lruNode) {
	n.prev = &c.head
	n.next = c.head.next
	c.head.next.prev = n
	c.head.next = n
}

package redisconn

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Known slots: CLUSTER KEYSLOT's answers on Redis 7, and the spec's CRC16
// check value (XMODEM of "123456789" is 0x31C3).
func TestKeySlot(t *testing.T) {
	if c := crc16("123456789"); c != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", c)
	}
	for key, want := range map[string]uint16{
		"foo": 12182, "bar": 5061, "hello": 866, "123456789": 12739,
		"{user1000}.following": 3443, "{user1000}.followers": 3443, "user1000": 3443,
		"foo{}{bar}":       8363, // an empty first tag: the whole key is hashed
		"foo{{bar}}zap":    4015, // the tag is "{bar"
		"t:{req:tenant:x}": KeySlot("req:tenant:x"),
	} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// The slot of any key is in range, and a key with a hash tag is in its
// tag's slot.
func FuzzKeySlot(f *testing.F) {
	f.Add("foo", "bar")
	f.Add("", "{")
	f.Fuzz(func(t *testing.T, tag, rest string) {
		s := KeySlot(tag + rest)
		if s >= clusterSlots {
			t.Fatalf("slot %d out of range", s)
		}
		if tag != "" && !strings.ContainsAny(tag, "{}") {
			if got, want := KeySlot("{"+tag+"}"+rest), KeySlot(tag); got != want {
				t.Fatalf("KeySlot({%q}%q) = %d, want the tag's %d", tag, rest, got, want)
			}
		}
	})
}

func TestParseClusterSlots(t *testing.T) {
	m, err := parseClusterSlots([]any{
		[]any{int64(10923), int64(16383), []any{"127.0.0.1", int64(7002), "id3"}},
		[]any{int64(0), int64(5460), []any{"127.0.0.1", int64(7000), "id1"}, []any{"127.0.0.1", int64(7003), "id4"}},
		[]any{int64(5461), int64(10922), []any{"", int64(7001), "id2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for slot, want := range map[uint16]string{0: "127.0.0.1:7000", 5460: "127.0.0.1:7000", 5461: ":7001", 16383: "127.0.0.1:7002"} {
		if got := m.node(slot); got != want {
			t.Errorf("node(%d) = %q, want %q", slot, got, want)
		}
	}
	if r := m.ranges("127.0.0.1:7000"); r != "0-5460" {
		t.Errorf("ranges = %q", r)
	}
	for _, bad := range []any{
		"x", []any{"x"}, []any{[]any{int64(5), int64(4), []any{"h", int64(1)}}},
		[]any{[]any{int64(0), int64(16384), []any{"h", int64(1)}}},
		[]any{[]any{int64(0), int64(9), []any{"h", int64(1)}}, []any{int64(9), int64(10), []any{"h", int64(2)}}},
		[]any{[]any{int64(0), int64(1), []any{"h", int64(70000)}}},
	} {
		if _, err := parseClusterSlots(bad); !errors.Is(err, errSlotsReply) {
			t.Errorf("parseClusterSlots(%v) = %v, want errSlotsReply", bad, err)
		}
	}
}

// FuzzParseClusterSlots: whatever the reply, an error or a map whose
// ranges are in order, inside the slots and apart.
func FuzzParseClusterSlots(f *testing.F) {
	f.Add(int64(0), int64(5460), "127.0.0.1", int64(7000), int64(5461), int64(16383), int64(7001))
	f.Fuzz(func(t *testing.T, s1, e1 int64, host string, p1, s2, e2, p2 int64) {
		m, err := parseClusterSlots([]any{
			[]any{s1, e1, []any{host, p1}},
			[]any{s2, e2, []any{host, p2}},
		})
		if err != nil {
			return
		}
		for i, r := range m {
			if r.end < r.start || r.end >= clusterSlots || (i > 0 && r.start <= m[i-1].end) {
				t.Fatalf("bad map %+v", m)
			}
		}
	})
}

// clusterStub is a Cluster client for the bypass' decisions alone: it is
// never called (the map is set by the test, and refreshes are held off).
type clusterStub struct{ rueidis.Client }

func (clusterStub) Mode() rueidis.ClientMode { return rueidis.ClientModeCluster }

// keyOn is a key whose slot is in [lo, hi].
func keyOn(t *testing.T, lo, hi uint16) string {
	for i := 0; ; i++ {
		k := "k" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		if s := KeySlot(k); s >= lo && s <= hi {
			return k
		}
		if i > 100000 {
			t.Fatal("no key found")
		}
	}
}

func TestNodeBypass(t *testing.T) {
	n := NewNodeBypass(BypassOptions{Threshold: 1, Backoff: time.Second, MaxBackoff: time.Second}, nil)
	defer n.Close()
	n.slots = slotMap{{0, 5460, "a:1"}, {5461, 10922, "b:1"}, {10923, 16383, "c:1"}}
	n.refreshing = true // no CLUSTER SLOTS: the stub has no connection
	c := clusterStub{}
	ka, kb, kc := keyOn(t, 0, 5460), keyOn(t, 5461, 10922), keyOn(t, 10923, 16383)
	now := time.Unix(1000, 0)
	down := errors.New("connection refused")

	// A single Redis: the whole bypass, as before.
	call, _, ok := n.Admit(now, nil, ka)
	if !ok {
		t.Fatal("not admitted")
	}
	call.Up()

	// Master a fails: only its keys are bypassed.
	call, _, _ = n.Admit(now, c, ka)
	if _, bypassed := call.Down(now, down); !bypassed {
		t.Fatal("a's failure did not bypass a")
	}
	if _, _, ok := n.Admit(now, c, ka); ok {
		t.Fatal("a key on a admitted while a is bypassed")
	}
	for _, k := range []string{kb, kc} {
		call, _, ok := n.Admit(now, c, k)
		if !ok {
			t.Fatalf("a key on another master refused while a alone is bypassed")
		}
		call.Up()
	}
	if n.Down() {
		t.Fatal("the whole Redis bypassed for one master")
	}
	// Keys on two masters at once: the whole bypass decides, not refused.
	if call, _, ok := n.Admit(now, c, kb, kc); !ok {
		t.Fatal("a call on b and c refused")
	} else {
		call.Up()
	}

	// A second master fails: the whole Redis is bypassed, and one probe
	// per back-off is let through for every key (a hung Cluster costs one
	// timeout per back-off, not one per master or per slot).
	call, _, _ = n.Admit(now, c, kb)
	call.Down(now, down)
	if !n.Down() {
		t.Fatal("two masters bypassed but not the whole Redis")
	}
	for _, k := range []string{ka, kb, kc} {
		if _, _, ok := n.Admit(now, c, k); ok {
			t.Fatalf("admitted during the whole bypass")
		}
	}
	now = now.Add(time.Second)
	probe, _, ok := n.Admit(now, c, kc)
	if !ok || !probe.Probe() {
		t.Fatal("no probe after the back-off")
	}
	for _, k := range []string{ka, kb, kc} {
		if _, _, ok := n.Admit(now, c, k); ok {
			t.Fatalf("a second call admitted while the probe is under way")
		}
	}
	probe.Up()
	if n.Down() {
		t.Fatal("the whole bypass outlived its probe's success")
	}
	if call, _, ok := n.Admit(now, c, kc); !ok {
		t.Fatal("c refused after recovery")
	} else {
		call.Up()
	}
}

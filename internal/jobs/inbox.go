package jobs

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pullSubject is where a consumer's pull requests go:
// $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>.
const pullSubject = "$JS.API.CONSUMER.MSG.NEXT."

// pullInbox answers a dispatcher's pull requests, each on a subscription
// of its own: the messages a pull brings carry their stream subject, not
// the pull's reply subject, so only the subscription tells which pull a
// message is for. A pull's subscription lives until nothing more can come
// for it (the pull's end status, or its last message), not until the
// dispatcher stops waiting for it, so a message the server hands a pull
// whose answer is late still arrives, to be run or nak'ed at once.
// nats.go's Fetch drops its subscription one second after the pull's
// expiry (jetstream/pull.go:1043 in v1.55.0), and a message that came
// later was lost until AckWait.
type pullInbox struct {
	nc      *nats.Conn
	prefix  string         // a pull's reply subject is prefix + its number
	replies chan *nats.Msg // to the dispatcher's run
	stopped chan struct{}  // closed once run reads no more replies
}

func newPullInbox(nc *nats.Conn) *pullInbox {
	return &pullInbox{
		nc: nc, prefix: nc.NewInbox() + ".",
		replies: make(chan *nats.Msg), stopped: make(chan struct{}),
	}
}

// subscribe opens the subscription a pull is answered on. Its callback
// runs on the subscription's goroutine, nats.go's, which ends when the
// subscription is closed (unsubscribed or drained).
func (in *pullInbox) subscribe(reply string) (*nats.Subscription, error) {
	sub, err := in.nc.Subscribe(reply, in.receive)
	if err != nil {
		return nil, fmt.Errorf("jobs: subscribing for a pull's answer: %w", err)
	}
	// Never drop a reply as a slow consumer: a pull brings at most its
	// batch and a status.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("jobs: subscribing for a pull's answer: %w", err)
	}
	return sub, nil
}

// receive hands a reply to run, or naks it once run is done.
func (in *pullInbox) receive(m *nats.Msg) {
	select {
	case in.replies <- m:
	case <-in.stopped:
		if code, _ := replyStatus(m); code == "" {
			_ = in.message(m).Nak()
		}
	}
}

// close makes receive nak what still comes to the subscriptions left,
// and drains them: the unsubscriptions are flushed, and the callbacks get
// what the server sent before it learnt of them. The server hands nothing
// to a pull whose reply subject has no interest.
func (in *pullInbox) close(left []*nats.Subscription) {
	close(in.stopped)
	for _, sub := range left {
		_ = sub.Drain()
	}
}

// ask sends a pull request for up to batch messages of subject's consumer,
// answered on reply: waiting up to expires for them, or, when expires is
// 0, only what is queued now (no_wait).
func (in *pullInbox) ask(subject, reply string, batch int, expires time.Duration) error {
	body, err := json.Marshal(struct {
		Batch   int           `json:"batch"`
		Expires time.Duration `json:"expires,omitempty"` // nanoseconds
		NoWait  bool          `json:"no_wait,omitempty"`
	}{batch, expires, expires == 0})
	if err != nil {
		return fmt.Errorf("jobs: pull request: %w", err)
	}
	if err := in.nc.PublishRequest(subject, reply, body); err != nil {
		return fmt.Errorf("jobs: sending pull request: %w", err)
	}
	return nil
}

func (in *pullInbox) message(m *nats.Msg) *queueMsg { return &queueMsg{nc: in.nc, msg: m} }

// replyStatus is the status of a reply that ends or punctuates a pull
// (404 nothing queued, 408 expired, 409 refused or cut short, 100 a
// heartbeat), "" for a message of the queue; as nats.go's checkMsg reads
// them.
func replyStatus(m *nats.Msg) (code, description string) {
	if len(m.Data) > 0 || len(m.Header) == 0 {
		return "", ""
	}
	return m.Header.Get("Status"), m.Header.Get("Description")
}

// queueMsg is a message of the work queue as one of the dispatcher's
// pulls received it. nats.go's jetstream.Msg cannot be made from outside
// that package, so the answers to the server, JetStream's ack protocol,
// are sent here, on the connection rather than through the subscription,
// which may be gone by the time a job ends.
type queueMsg struct {
	nc  *nats.Conn
	msg *nats.Msg

	mu       sync.Mutex
	answered bool // acked, nak'ed or terminated: nothing more is sent
}

var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

// Metadata reads the delivery's metadata from its reply subject.
func (m *queueMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := m.msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("jobs: message metadata: %w", err)
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered,
		NumPending:   md.NumPending,
		Timestamp:    md.Timestamp,
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Domain:       md.Domain,
	}, nil
}

func (m *queueMsg) Data() []byte      { return m.msg.Data }
func (m *queueMsg) Ack() error        { return m.answer(ackAck, true) }
func (m *queueMsg) Nak() error        { return m.answer(ackNak, true) }
func (m *queueMsg) Term() error       { return m.answer(ackTerm, true) }
func (m *queueMsg) InProgress() error { return m.answer(ackProgress, false) }

// NakWithDelay asks the server to deliver the message again after delay.
func (m *queueMsg) NakWithDelay(delay time.Duration) error {
	if delay <= 0 {
		return m.Nak()
	}
	return m.answer(fmt.Appendf(nil, "%s {\"delay\": %d}", ackNak, delay.Nanoseconds()), true)
}

// answer sends body to the server about the delivery; final answers are
// sent once, as jetstream.Msg does.
func (m *queueMsg) answer(body []byte, final bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answered {
		return jetstream.ErrMsgAlreadyAckd
	}
	if err := m.nc.Publish(m.msg.Reply, body); err != nil {
		return fmt.Errorf("jobs: answering message: %w", err)
	}
	m.answered = final
	return nil
}

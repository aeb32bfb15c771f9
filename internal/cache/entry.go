package cache

import (
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// Entry is a cached answer in a form that replays both as a JSON response
// and as an SSE stream. Exactly one of Body (a non-streaming response) and
// Events (a streamed one) is set.
type Entry struct {
	Status      int
	ContentType string    // of the original response
	Stored      time.Time // when the backend answered; for the Age header
	// Fresh is when the entry stops being fresh; past it, and while the
	// level still holds it (stale-while-revalidate), it is served stale.
	// Zero: fresh for as long as it is stored.
	Fresh time.Time
	// Body is the full JSON body of a non-streaming response.
	Body []byte
	// Events are the data payloads of a stream's SSE events in order, each
	// without "data: " and the blank line, and without the final [DONE]
	// (openai.ParseSSE).
	Events [][]byte

	// left is how long the level it was read from still holds it, when
	// that level says (the Redis level: its PTTL; negative: not to be
	// copied); 0 when the level does not say. A copy promoted to the
	// in-process level lives no longer.
	left time.Duration
}

// entryOverhead approximates the bytes an Entry costs beyond its payload.
const entryOverhead = 96

// Size is the entry's approximate memory footprint in bytes.
func (e *Entry) Size() int {
	n := entryOverhead + len(e.ContentType) + len(e.Body)
	for _, ev := range e.Events {
		n += len(ev) + 24
	}
	return n
}

// Stale reports whether the entry is past its freshness at now.
func (e *Entry) Stale(now time.Time) bool { return !e.Fresh.IsZero() && now.After(e.Fresh) }

// IsStream reports whether the entry holds a streamed answer.
func (e *Entry) IsStream() bool { return e.Body == nil && e.Events != nil }

// Age is how long ago the answer was stored, in whole seconds, never
// negative: the value of the Age header.
func (e *Entry) Age(now time.Time) int {
	if e.Stored.IsZero() || now.Before(e.Stored) {
		return 0
	}
	return int(now.Sub(e.Stored) / time.Second)
}

// ToJSON returns the body of a non-streaming response: Body as stored, or,
// for a stream, the completion assembled from its chunks
// (openai.StreamToJSON). An error wraps openai.ErrNotConvertible: treat the
// lookup as a miss.
func (e *Entry) ToJSON() ([]byte, error) {
	if !e.IsStream() {
		return e.Body, nil
	}
	return openai.StreamToJSON(e.Events)
}

// ToSSE returns the entry as an SSE response body in OpenAI's framing. A
// stored stream is replayed as it was (openai.EventsToSSE: usage-only
// chunks dropped unless includeUsage); a stored JSON completion is cut into
// chunks (openai.JSONToSSE). An error wraps openai.ErrNotConvertible.
func (e *Entry) ToSSE(includeUsage bool) ([]byte, error) {
	if e.IsStream() {
		return openai.EventsToSSE(e.Events, includeUsage), nil
	}
	return openai.JSONToSSE(e.Body, includeUsage)
}

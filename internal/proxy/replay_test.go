package proxy

import (
	"io"
	"strings"
	"testing"
)

// The peeked first chunk is replayed once, then let go: the replay used
// to keep an empty slice of the peek's 4 KiB buffer, and with it the
// buffer, for the whole stream.
func TestReplayLetsGoOfThePeek(t *testing.T) {
	r := &replay{first: make([]byte, 10, 4<<10), rest: io.NopCloser(strings.NewReader("rest"))}
	got, err := io.ReadAll(r)
	if err != nil || len(got) != 14 {
		t.Fatalf("read %q, %v", got, err)
	}
	if r.first != nil {
		t.Fatalf("the replay still holds the peek's buffer (cap %d) after replaying it", cap(r.first))
	}
}

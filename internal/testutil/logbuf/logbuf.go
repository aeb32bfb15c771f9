// Package logbuf is a log sink for tests: written by the code under test's
// goroutines while the test reads it.
package logbuf

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CheckFailureLine decodes the one line in s, as slog's JSON handler
// writes it, and fails t unless its msg starts with msg, its error is
// cause (a few stable words: telemetry.NetCause) and its detail, Go's
// text, contains detail.
func (s *Buffer) CheckFailureLine(t testing.TB, msg, cause, detail string) {
	t.Helper()
	var line struct{ Msg, Error, Detail string }
	if err := json.Unmarshal([]byte(strings.TrimSpace(s.String())), &line); err != nil {
		t.Fatalf("%v: %s", err, s.String())
	}
	if !strings.HasPrefix(line.Msg, msg) || line.Error != cause {
		t.Errorf("line %q error %q, want %q... and %q", line.Msg, line.Error, msg, cause)
	}
	if !strings.Contains(line.Detail, detail) {
		t.Errorf("detail %q, want Go's text (with %q)", line.Detail, detail)
	}
}

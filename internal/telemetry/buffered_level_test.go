package telemetry

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The buffered logger's Enabled follows its level as the JSON handler's
// does: a level that changes (a reload sets it) is read on every call; the
// loggers WithAttrs and WithGroup make share it; no level is Info. What
// Enabled says is what the logger writes.
func TestBufferedLoggerEnabledFollowsLevel(t *testing.T) {
	ctx := context.Background()
	var out lockedBuffer
	var level slog.LevelVar
	level.Set(slog.LevelError)
	log, w := NewBufferedLogger(&out, &level, time.Hour)
	derived := []*slog.Logger{log, log.With("k", "v"), log.WithGroup("g")}
	for _, l := range derived {
		if l.Enabled(ctx, slog.LevelInfo) || !l.Enabled(ctx, slog.LevelError) {
			t.Fatalf("at level error: info %v, error %v; want false, true", l.Enabled(ctx, slog.LevelInfo), l.Enabled(ctx, slog.LevelError))
		}
		l.Info("held back")
	}
	level.Set(slog.LevelDebug)
	for _, l := range derived {
		if !l.Enabled(ctx, slog.LevelDebug) {
			t.Fatal("the level set to debug: debug not enabled")
		}
		l.Debug("written")
	}
	w.Close()
	if got := out.String(); strings.Contains(got, "held back") || strings.Count(got, "written") != len(derived) {
		t.Fatalf("written: %q; want the 3 debug lines and no info line", got)
	}

	none, w2 := NewBufferedLogger(&out, nil, time.Hour)
	defer w2.Close()
	if none.Enabled(ctx, slog.LevelDebug) || !none.Enabled(ctx, slog.LevelInfo) {
		t.Fatal("no level: want Info's (debug off, info on)")
	}
}

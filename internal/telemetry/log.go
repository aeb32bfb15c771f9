package telemetry

import (
	"fmt"
	"io"
	"log/slog"
)

// NewLogger returns a JSON slog logger at level (debug|info|warn|error),
// ready for ELK / Loki ingestion.
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Duration is a time.Duration written as "250ms", "5s", "2m" in YAML.
type Duration time.Duration

// UnmarshalText parses Go duration syntax. A negative duration is
// refused: no key takes one, and before, one such as shutdown_grace: -5s
// or health.active.interval: -5s was taken (no grace; probes silently
// off) where no check of its key looked.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. 500ms, 5s, 2m; at most 2562047h)", telemetry.RedactURL(string(b)))
	}
	if v < 0 {
		return fmt.Errorf("cannot be negative, got %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size written as 8MiB, 512KiB, 1GB or a plain number of bytes.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// UnmarshalText parses a size with an optional unit.
func (s *ByteSize) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(str, u.suffix) {
			str, mult = strings.TrimSpace(strings.TrimSuffix(str, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q (use e.g. 8MiB, 512KiB, 1048576)", telemetry.RedactURL(string(b)))
	}
	if n > math.MaxInt64/mult { // n*mult wrapped negative: "must be positive" named the wrong problem
		return fmt.Errorf("size %q is too large (at most 8EiB less one byte)", b)
	}
	*s = ByteSize(n * mult)
	return nil
}

// MarshalText writes the size in bytes.
func (s ByteSize) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

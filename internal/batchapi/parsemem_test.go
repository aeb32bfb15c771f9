package batchapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// ParseOptions.Memory is charged while a line is read and checked and
// given back whole when parsing ends, accepted or refused: a budget that
// leaked would refuse every body after enough uploads.
func TestParseBatchInputChargesAndReleasesMemory(t *testing.T) {
	long := chatLine(strings.Repeat("i", 300<<10), "m1") // a 300 KiB line
	in := chatLine("a", "m1") + "\n" + long + "\n" + chatLine("b", "m1") + "\n"
	for _, tc := range []struct {
		name   string
		budget int64
		want   error
	}{
		{"fits", 2 << 20, nil},
		{"line does not fit", 256 << 10, ErrLineMemory},
		{"decoded copy does not fit", 600 << 10, ErrLineMemory}, // 64 KiB + 512 KiB buffer + 300 KiB copy
		{"read buffer does not fit", 1 << 10, ErrLineMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := netguard.NewBudget(tc.budget)
			o := testParseOpts
			o.Memory, o.ValidateOnly = mem, true
			_, lineErrs, err := ParseBatchInput(strings.NewReader(in), o)
			if !errors.Is(err, tc.want) || len(lineErrs) > 0 {
				t.Fatalf("err %v, line errors %v; want %v", err, lineErrs, tc.want)
			}
			if h := mem.Held(); h != 0 {
				t.Fatalf("%d bytes still charged after parsing", h)
			}
		})
	}
}

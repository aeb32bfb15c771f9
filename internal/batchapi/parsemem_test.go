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
		name         string
		budget, held int64 // held: by other requests meanwhile
		want         error
		wantLineErr  bool // the long line refused on its line: it never fits
	}{
		{"fits", 2 << 20, 0, nil, false},
		{"line does not fit", 2 << 20, 1800 << 10, ErrLineMemory, false},
		{"decoded copy does not fit", 2 << 20, 1200 << 10, ErrLineMemory, false}, // 64 KiB + 512 KiB buffer + 300 KiB copy
		{"read buffer does not fit", 2 << 20, 2047 << 10, ErrLineMemory, false},
		{"line never fits", 256 << 10, 0, nil, true},
		{"decoded copy never fits", 850 << 10, 0, nil, true}, // the buffer grows within 832 KiB
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := netguard.NewBudget(tc.budget)
			if !mem.TryReserve(tc.held) {
				t.Fatal("cannot hold the other requests' bytes")
			}
			o := testParseOpts
			o.Memory, o.ValidateOnly = mem, true
			_, lineErrs, err := ParseBatchInput(strings.NewReader(in), o)
			if !errors.Is(err, tc.want) || (len(lineErrs) > 0) != tc.wantLineErr {
				t.Fatalf("err %v, line errors %v; want %v, line error %v", err, lineErrs, tc.want, tc.wantLineErr)
			}
			if tc.wantLineErr && (lineErrs[0].Line != 2 || lineErrs[0].Code != CodeLineTooLong) {
				t.Fatalf("line errors %v; want line 2 %s", lineErrs, CodeLineTooLong)
			}
			if h := mem.Held() - tc.held; h != 0 {
				t.Fatalf("%d bytes still charged after parsing", h)
			}
		})
	}
}

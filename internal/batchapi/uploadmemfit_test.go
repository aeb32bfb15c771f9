package batchapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// A line within the 8 MiB line limit whose checking needs more than the
// whole server.max_body_memory (a valid 12 MiB: at least max_body_bytes)
// would never fit, however idle the gateway: it is refused on its line,
// 400 line_too_long, not 503 body_memory_full, which a client retries
// forever. The budget is given back whole either way.
func TestUploadLineBeyondBodyMemoryIsRefusedOnItsLine(t *testing.T) {
	mem := netguard.NewBudget(12 << 20)
	e := newEnv(t, envOptions{bodyMemory: mem})
	long := chatLine(strings.Repeat("i", 7<<20), "m1") // grows its buffer 4 MiB -> 8 MiB: 12 MiB + 64 KiB
	r := e.upload([]byte(chatLine("a", "m1") + "\n" + long + "\n"))
	got := r.wantError(t, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "line_too_long") || !strings.Contains(got.Error.Message, "line 2") {
		t.Fatalf("want line 2 refused line_too_long, got %s", r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "" {
		t.Fatalf("Retry-After %q on a refusal that retrying cannot help", ra)
	}
	if h := mem.Held(); h != 0 {
		t.Fatalf("%d bytes still charged after the upload", h)
	}
	// A budget that holds it, held by nobody else: the same file is taken.
	mem.SetLimit(20 << 20)
	e.uploadOK([]byte(chatLine("a", "m1") + "\n" + long + "\n"))
	if h := mem.Held(); h != 0 {
		t.Fatalf("%d bytes still charged after the upload", h)
	}
}

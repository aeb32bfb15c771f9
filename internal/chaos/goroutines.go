package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// goroutineDump is one reading of the gateway's goroutines, from its
// goroutine profile (admin.pprof, /debug/pprof/goroutine?debug=1): how many
// there are and what each group of them is doing, so that a failed leak
// target can name the goroutines it found and the count can leave out the
// upstream keep-alive pool's by what they run, not by a guess from fds.
type goroutineDump struct {
	Total int
	// Pool are net/http.Transport's two goroutines per pooled connection
	// (persistConn's readLoop and writeLoop), a bounded cache like the
	// connections themselves. The default lean upstream client
	// (internal/h1client) has none: its idle connections run nothing.
	Pool int
	// Stacks counts the goroutines by what they run (stackKey).
	Stacks map[string]int
}

// poolFrames are the frames that mark a goroutine of net/http's upstream
// keep-alive pool.
var poolFrames = []string{"net/http.(*persistConn).readLoop", "net/http.(*persistConn).writeLoop"}

// readGoroutines fetches and parses the goroutine profile at url.
func readGoroutines(ctx context.Context, c *http.Client, url string) (goroutineDump, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return goroutineDump{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return goroutineDump{}, fmt.Errorf("goroutine profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return goroutineDump{}, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return parseGoroutines(resp.Body)
}

// parseGoroutines reads a goroutine profile in its debug=1 text form:
//
//	goroutine profile: total 12
//	3 @ 0x43a0f6 0x4071ac ...
//	#	0x4712e4	net/http.(*persistConn).readLoop+0x3c4	/usr/local/go/src/net/http/transport.go:2205
//	...
//
// a header with the total, then groups of goroutines with the same stack:
// their count and one frame per line, innermost first.
func parseGoroutines(r io.Reader) (goroutineDump, error) {
	d := goroutineDump{Total: -1, Stacks: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n, funcs := 0, []string(nil)
	flush := func() {
		if n == 0 {
			return
		}
		d.Stacks[stackKey(funcs)] += n
		for _, f := range funcs {
			if slices.Contains(poolFrames, f) {
				d.Pool += n
				break
			}
		}
		n, funcs = 0, nil
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "goroutine profile: total "):
			t, err := strconv.Atoi(strings.TrimPrefix(line, "goroutine profile: total "))
			if err != nil {
				return d, fmt.Errorf("goroutine profile header %q: %w", line, err)
			}
			d.Total = t
		case strings.Contains(line, " @ "):
			flush()
			c, err := strconv.Atoi(line[:strings.Index(line, " @ ")])
			if err != nil {
				return d, fmt.Errorf("goroutine profile group %q: %w", line, err)
			}
			n = c
		case strings.HasPrefix(line, "#\t0x"):
			// "#", pc, function+offset, file:line; or "#", pc alone
			// for a frame without a symbol.
			f := strings.Split(line, "\t")
			fn := f[1]
			if len(f) >= 3 {
				fn, _, _ = strings.Cut(f[2], "+0x")
			}
			funcs = append(funcs, fn)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("goroutine profile: %w", err)
	}
	if d.Total < 0 {
		return d, fmt.Errorf("goroutine profile: no total")
	}
	return d, nil
}

// stackKey names a stack by where it waits (its innermost frame outside
// the runtime and the standard library's internals) and the function the
// goroutine was started with (its outermost frame).
func stackKey(funcs []string) string {
	if len(funcs) == 0 {
		return "(no frames)"
	}
	at := funcs[0]
	for _, f := range funcs {
		if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/") && !strings.HasPrefix(f, "sync.") {
			at = f
			break
		}
	}
	entry := funcs[len(funcs)-1]
	if entry == at {
		return at
	}
	return at + " in " + entry
}

// stackGrowth lists the stacks with more goroutines after than before,
// most grown first, at most limit of them.
func stackGrowth(before, after map[string]int, limit int) string {
	type grown struct {
		key string
		d   int
	}
	var g []grown
	for k, n := range after {
		if d := n - before[k]; d > 0 {
			g = append(g, grown{k, d})
		}
	}
	slices.SortFunc(g, func(a, b grown) int {
		if a.d != b.d {
			return b.d - a.d
		}
		return strings.Compare(a.key, b.key)
	})
	var parts []string
	for i, x := range g {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more", len(g)-limit))
			break
		}
		parts = append(parts, fmt.Sprintf("+%d %s", x.d, x.key))
	}
	return strings.Join(parts, ", ")
}

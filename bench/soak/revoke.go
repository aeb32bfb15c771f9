package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"sync"
	"time"
)

// The --revoke traffic: the config lists one API key, the only key of its
// tenant, and every fourth reload removes it (the next puts it back).
// Just before a removing reload the driver queues a burst of async jobs
// under the key; a reload that removes a tenant's last key ends its queued
// jobs unrun (failed api_key_revoked), so each must end succeeded (run
// before the reload) or failed api_key_revoked, and nothing else: a job
// still queued, gone, or failed otherwise is a loss. These jobs are
// counted here, apart from the mix's, so the mix's verdict stays exact.
const (
	revokeKey    = "sk-soak-revoke-0123456789abcdef"
	revokeTenant = "soak-revoke"
	// keepKey is another tenant's key, never removed and never used: with
	// no key left at all the gateway is in open mode, where a key
	// identifies nobody and no tenant is orphaned (the removed key's jobs
	// then simply run, and its polls answer 404 as another's).
	keepKey = "sk-soak-keep-0123456789abcdef"
)

// revokeKeyOn says whether the config written after the given number of
// reloads lists the key: off after reload 1, 5, 9, ... (a minute in four
// at one reload a minute), on otherwise.
func revokeKeyOn(reloads int) bool { return reloads%4 != 1 }

// revokeYAML is the auth section: keepKey always, revokeKey when on.
// Keyless callers stay anonymous ip: tenants (require_key is off), so
// the rest of the soak's traffic is as in open mode.
func revokeYAML(on bool) string {
	s := fmt.Sprintf("auth:\n  keys:\n    - key: %s\n      tenant: soak-keep\n", keepKey)
	if on {
		s += fmt.Sprintf("    - key: %s\n      tenant: %s\n", revokeKey, revokeTenant)
	}
	return s
}

// revokeTally counts the keyed jobs' submissions and ends.
type revokeTally struct {
	mu       sync.Mutex
	bursts   int
	accepted int
	refused  map[string]int // submissions not accepted, by status
	ends     map[string]int // accepted jobs by end: revokeOutcome
	wg       sync.WaitGroup // the pollers
}

func newRevokeTally() *revokeTally {
	return &revokeTally{refused: map[string]int{}, ends: map[string]int{}}
}

// revokeOutcome names a keyed job's end: "succeeded" and "failed
// api_key_revoked" are the two allowed; "" while it has not ended.
func revokeOutcome(status, code string) string {
	switch status {
	case "succeeded", "cancelled":
		return status
	case "failed":
		return "failed " + code
	}
	return ""
}

func (t *revokeTally) end(outcome string) {
	t.mu.Lock()
	t.ends[outcome]++
	t.mu.Unlock()
}

// judge: every accepted job ended succeeded or failed api_key_revoked.
func (t *revokeTally) judge() (ok bool, bad int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	good := t.ends["succeeded"] + t.ends["failed api_key_revoked"]
	return good == t.accepted, t.accepted - good
}

func (t *revokeTally) report(w io.Writer) bool {
	ok, bad := t.judge()
	t.mu.Lock()
	defer t.mu.Unlock()
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nrevoked key: %d bursts before a reload removing tenant %s's last key; jobs accepted %d, not ended as allowed %d  %s\n",
		t.bursts, revokeTenant, t.accepted, bad, verdict)
	for _, m := range []map[string]int{t.ends, t.refused} { // refusals are named "submit STATUS"
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-40s %d\n", k, m[k])
		}
	}
	return ok
}

// revokeBurst queues n async jobs under the key (returning once each
// submission is answered) and polls each to its end in the background
// (t.wg), through the key's removal: a 401 while it is away is waited
// out, the reload after next puts the key back.
func (d *driver) revokeBurst(ctx context.Context, t *revokeTally, n int) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		locs []string
	)
	hdr := map[string]string{"Prefer": "respond-async", "Authorization": "Bearer " + revokeKey}
	for i := 0; i < n; i++ {
		wg.Go(func() {
			resp := d.post(ctx, d.keyed, "revoke-submit", "/v1/chat/completions", chatBody(d.prompt(), 64, false, false), hdr, readAll)
			mu.Lock()
			defer mu.Unlock()
			if resp == nil || resp.StatusCode != http.StatusAccepted {
				st := "err"
				if resp != nil {
					st = fmt.Sprint(resp.StatusCode)
				}
				t.mu.Lock()
				t.refused["submit "+st]++
				t.mu.Unlock()
				return
			}
			locs = append(locs, resp.Header.Get("Location"))
		})
	}
	wg.Wait()
	t.mu.Lock()
	t.bursts++
	t.accepted += len(locs)
	t.mu.Unlock()
	for _, loc := range locs {
		t.wg.Go(func() { t.end(d.pollKeyed(ctx, loc)) })
	}
}

// pollKeyed polls a keyed job until it ends (6 minutes at most: the key
// is away a minute in four); its outcome, or why it has none.
func (d *driver) pollKeyed(ctx context.Context, loc string) string {
	deadline := time.Now().Add(6 * time.Minute)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+loc, nil)
		if err != nil {
			return "poll error"
		}
		req.Header.Set("Authorization", "Bearer "+revokeKey)
		resp, err := d.keyed.Do(req)
		if err == nil {
			var st struct {
				Status string `json:"status"`
				Error  *struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusUnauthorized:
				// The key is away: wait for it.
			case resp.StatusCode != http.StatusOK:
				return fmt.Sprintf("poll %d (%s)", resp.StatusCode, path.Base(loc))
			case rerr == nil && json.Unmarshal(b, &st) == nil:
				code := ""
				if st.Error != nil {
					code = st.Error.Code
				}
				if o := revokeOutcome(st.Status, code); o != "" {
					return o
				}
			}
		}
		if !sleep(ctx, time.Second) {
			return "abandoned"
		}
	}
	return "not done in 6m (" + path.Base(loc) + ")"
}

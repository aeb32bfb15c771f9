package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// TestRigTenantsAreTenants starts a leg's Sluice rig for two API keys,
// holds one stream of each in flight and reads the admission queue's
// tenants from /status: two, neither the client's address. Sluice in open
// mode (no auth.keys) takes every caller for its address, so the mix's and
// the fairness scenario's tenants, all from 127.0.0.1, were one tenant to
// admission (ip:127.0.0.1) and its fair queue never ran: the small
// tenants were refused at the big one's rate (docs/BENCHMARKS.md §8).
func TestRigTenantsAreTenants(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc := simConfig()
	sc.DecodeStepBase = 100 * time.Millisecond // the streams outlast the scrape
	opt := options{Backends: 1, Sim: sc}
	tenants := []bench.Tenant{{Name: "big", APIKey: "sk-test-tenant-big-0123456789"}, {Name: "small", APIKey: "sk-test-tenant-small-0123456789"}}
	rig, err := startRig(ctx, opt, regimeShed, pathSluice, 0, tenants)
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Stop()
	for _, tn := range tenants {
		body := `{"model":"sim-model","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"hello"}]}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rig.Targets[0]+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tn.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", tn.Name, resp.StatusCode)
		}
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil { // a first event: in flight
			t.Fatalf("%s: %v", tn.Name, err)
		}
	}
	got, err := queueTenants(ctx, rig.Admins[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("admission's tenants with streams in flight: %v, want the two keys' own", got)
	}
	for _, name := range got {
		if strings.HasPrefix(name, "ip:") {
			t.Errorf("tenant %q: a key was taken for the client's address (tenants %v)", name, got)
		}
	}
}

// queueTenants is the tenants the first model's admission queue holds
// requests of, from the gateway's /status.
func queueTenants(ctx context.Context, admin string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var doc struct {
		Models []struct {
			Queue *struct {
				Tenants map[string]json.RawMessage `json:"tenants"`
			} `json:"queue"`
		} `json:"models"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if len(doc.Models) == 0 || doc.Models[0].Queue == nil {
		return nil, fmt.Errorf("status: no admission queue")
	}
	var names []string
	for name := range doc.Models[0].Queue.Tenants {
		names = append(names, name)
	}
	return names, nil
}

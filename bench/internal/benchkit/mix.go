package benchkit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/sluice-gw/sluice/internal/bench"
)

// Parts of a mixed workload: tenants with real shares, requests dealt
// into classes (streamed or not) that each load generator sends alike.

// ServeGenShares are the n busiest clients of a ServeGen directory (one
// CSV per client, bench.LoadServeGenClients): their names and their mean
// rates over the whole series, busiest first. The shares of a mixed
// workload's tenants are then those of real clients of one service.
func ServeGenShares(dir string, n int) ([]string, []float64, error) {
	if n < 1 {
		return nil, nil, errors.New("servegen shares: want at least one client")
	}
	rates, names, _, err := bench.LoadServeGenClients(dir)
	if err != nil {
		return nil, nil, err
	}
	type client struct {
		name string
		mean float64
	}
	cs := make([]client, len(rates))
	for i, r := range rates {
		sum := 0.0
		for _, v := range r {
			sum += v
		}
		if len(r) > 0 {
			sum /= float64(len(r))
		}
		cs[i] = client{names[i], sum}
	}
	slices.SortStableFunc(cs, func(a, b client) int { return cmp.Compare(b.mean, a.mean) })
	if len(cs) < n || !(cs[n-1].mean > 0) {
		return nil, nil, fmt.Errorf("servegen %s: fewer than %d clients with traffic", dir, n)
	}
	out, shares := make([]string, n), make([]float64, n)
	for i := range n {
		out[i], shares[i] = cs[i].name, cs[i].mean
	}
	return out, shares, nil
}

// Deal splits arr into two classes: each arrival goes to the first with
// probability share, drawn from seed (the same seed deals alike). Both
// keep arr's order.
func Deal(arr []bench.Arrival, share float64, seed uint64) (first, rest []bench.Arrival) {
	rng := rand.New(rand.NewPCG(seed, 0x6d6978))
	for _, a := range arr {
		if rng.Float64() < share {
			first = append(first, a)
		} else {
			rest = append(rest, a)
		}
	}
	return first, rest
}

// RunTogether runs every configuration's load generator at once (same
// start), for classes of one workload that differ in how they ask (a
// streamed and a non-streamed share) or where they go (replicas). It
// returns each configuration's records, in its arrivals' order, and
// whether every generator kept up. A configuration without arrivals is
// skipped (no records).
func RunTogether(ctx context.Context, cfgs []bench.Config) ([][]bench.Record, bool, error) {
	res := make([]*bench.Result, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		if len(cfgs[i].Arrivals) == 0 {
			continue
		}
		wg.Go(func() { res[i], errs[i] = bench.Run(ctx, cfgs[i]) })
	}
	wg.Wait()
	out := make([][]bench.Record, len(cfgs))
	kept := true
	for i := range cfgs {
		if errs[i] != nil {
			return nil, false, errs[i]
		}
		if res[i] == nil {
			continue
		}
		if res[i].Interrupted {
			return nil, false, ctx.Err()
		}
		out[i] = res[i].Records
		kept = kept && res[i].KeptUp
	}
	return out, kept, nil
}

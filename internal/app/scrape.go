package app

import (
	"context"
	"net/http"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/scrape"
)

// usesLoadMetrics reports whether backends are scraped: to cap their
// concurrency (load_metrics.enabled), or because a model routes on their
// load (least_load scores it, the prefix_affinity policies bound their
// loads with it).
func usesLoadMetrics(cfg *config.Config) bool {
	if cfg.LoadMetrics.Enabled {
		return true
	}
	for i := range cfg.Models {
		if routing.UsesLoadMetrics(config.PolicyFor(&cfg.Models[i])) {
			return true
		}
	}
	return false
}

// syncScraper runs the backend-metrics scraper while some model needs it,
// restarting it when its settings change.
func (a *App) syncScraper(cfg *config.Config) {
	a.scrapeMu.Lock()
	defer a.scrapeMu.Unlock()
	want := usesLoadMetrics(cfg)
	if a.scrapeEnd != nil && want && cfg.LoadMetrics.Same(a.scrapeCfg) {
		return
	}
	a.stopScraperLocked()
	if !want {
		return
	}
	a.scrapeCfg = cfg.LoadMetrics
	names, err := scrape.Preset(cfg.LoadMetrics.Preset)
	if err != nil {
		a.log.Error("load metrics scraping disabled", "error", err.Error())
		return
	}
	// nil (a config built without defaults) reads scrape's default names.
	names.BatchBound = cfg.LoadMetrics.BatchBoundMetrics
	s := scrape.NewScraper(scrape.Config{
		Interval: cfg.LoadMetrics.Interval.D(), Timeout: cfg.LoadMetrics.Timeout.D(),
		Path: cfg.LoadMetrics.Path, Names: names, StaleAfter: cfg.LoadMetrics.StaleAfter.D(),
		CapConcurrency: cfg.LoadMetrics.Enabled,
	}, &http.Client{Transport: a.deps.Transport.Current(cfg.Timeouts.Connect.D())}, a.log)
	ctx, cancel := context.WithCancel(context.Background())
	a.scrapeEnd = cancel
	a.scrapeWG.Add(1)
	go func() {
		defer a.scrapeWG.Done()
		s.Run(ctx, func() []*endpointBackend { return a.gw.Runtime().Backends() })
	}()
}

func (a *App) stopScraper() {
	a.scrapeMu.Lock()
	defer a.scrapeMu.Unlock()
	a.stopScraperLocked()
}

func (a *App) stopScraperLocked() {
	if a.scrapeEnd != nil {
		a.scrapeEnd()
		a.scrapeWG.Wait()
		a.scrapeEnd = nil
	}
}

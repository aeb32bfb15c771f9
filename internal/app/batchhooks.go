package app

import (
	"fmt"
	"reflect"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// checkBatchWebhooks refuses a reload whose queue.batch_webhooks the
// running queue would refuse (an internal address without
// allow_private_webhooks, which is read at start), before anything of the
// reload is built: the whole reload is refused, the running endpoints
// kept.
func (a *App) checkBatchWebhooks(cfg *config.Config) error {
	a.jobsMu.Lock()
	start := a.queueStart
	a.jobsMu.Unlock()
	if !start.Enabled {
		return nil
	}
	if err := jobs.CheckBatchEndpoints(batchEndpoints(cfg.Queue.BatchWebhooks), start.AllowPrivateWebhooks); err != nil {
		return fmt.Errorf("queue.batch_webhooks: %w", err)
	}
	return nil
}

// reloadBatchWebhooks applies a reload's queue.batch_webhooks (checked
// by checkBatchWebhooks) to the job queue. It reports whether it applied
// them; false when they are unchanged, or when a restart is needed to
// apply them: the queue is off (queue.enabled is read at start), or it
// was started without queue.webhook_secret (which signs them and is read
// at start). Those leave queue.batch_webhooks in the reload's
// restart-only warning (warnRestartOnly).
//
// Before, every queue key was restart-only: a reload adding a tenant's
// endpoint, or taking one away, said "these keys need a restart:
// queue.batch_webhooks" and the running endpoints went on receiving
// events until the next restart.
//
// A batch that ends after the reload has its events sent to the new
// endpoints. An event recorded before keeps the endpoint its record
// names (the one configured for its tenant when its batch ended): any
// process sharing the queue may send a pending event, `sluice worker`
// processes too, whose --batch-webhooks a gateway's reload does not
// change; sending to the endpoint of whichever process's configuration
// happened to sweep it would lose events or send them elsewhere. The
// store records the new list in the jobs bucket (the queue was opened
// with RecordBatchWebhooks): the events pending for an endpoint it took
// out, of batches ended before, are dropped at their next attempt by
// whichever process sends them (jobs/batchhooklist.go).
func (a *App) reloadBatchWebhooks(cfg, old *config.Config) bool {
	if reflect.DeepEqual(cfg.Queue.BatchWebhooks, old.Queue.BatchWebhooks) {
		return false
	}
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	if !a.queueStart.Enabled || !cfg.Queue.Enabled {
		return false
	}
	endpoints := batchEndpoints(cfg.Queue.BatchWebhooks)
	if len(endpoints) > 0 && a.queueStart.WebhookSecret == "" {
		return false
	}
	if a.jobs != nil {
		if err := a.jobs.store.SetBatchWebhooks(endpoints); err != nil {
			// Not reached: checkBatchWebhooks refused what it refuses.
			a.log.Error("config reload: queue.batch_webhooks not applied; the running endpoints are kept", "error", err.Error())
			return false
		}
	}
	a.batchHooks = &endpoints
	return true
}

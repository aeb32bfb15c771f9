package gateway_test

import (
	"os"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
)

// TestMain gives the gateway's tests internal/app's runtime builder (see
// export_test.go): runtimes are built from configs in one place only.
func TestMain(m *testing.M) {
	var mu sync.Mutex
	built := map[*gateway.Runtime]*app.Built{} // what a rebuild takes over from
	gateway.SetBuild(func(cfg *config.Config, d gateway.Deps, prev *gateway.Runtime) (*gateway.Runtime, error) {
		mu.Lock()
		from := built[prev]
		mu.Unlock()
		b, err := app.Build(cfg, app.Deps(d), from)
		if err != nil {
			return nil, err
		}
		b.Commit()
		mu.Lock()
		built[b.Runtime] = b
		mu.Unlock()
		return b.Runtime, nil
	})
	os.Exit(m.Run())
}

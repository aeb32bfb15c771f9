package app

import (
	"fmt"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// upstreamRouter is the round tripper of this runtime's requests to its
// backends: it reads the files of upstream_tls and of every backend's own
// tls block (at every build, so a reload serves a renewed CA or client
// certificate, and a file that no longer reads fails the build and
// changes nothing) and gives each https backend's host:port the
// transport of its profile.
func (b *build) upstreamRouter() (*proxy.Router, error) {
	cfg := b.cfg
	var def *proxy.TLSProfile
	if cfg.UpstreamTLS.Set() {
		var err error
		if def, err = loadProfile(cfg.UpstreamTLS, "upstream_tls"); err != nil {
			return nil, err
		}
	}
	profiles := map[string]*proxy.TLSProfile{}
	add := func(t *config.UpstreamTLS, key string) error {
		if t == nil {
			return nil
		}
		p, err := loadProfile(*t, key)
		profiles[key] = p
		return err
	}
	for i := range cfg.Models {
		m := &cfg.Models[i]
		for j := range m.Backends {
			if err := add(m.Backends[j].TLS, fmt.Sprintf("models[%d].backends[%d].tls", i, j)); err != nil {
				return nil, err
			}
		}
		for j := range m.Discovery {
			if err := add(m.Discovery[j].TLS, fmt.Sprintf("models[%d].discovery[%d].tls", i, j)); err != nil {
				return nil, err
			}
		}
	}
	byHost := map[string]*proxy.TLSProfile{}
	owner := map[string]string{} // host -> the tls block it took ("" = upstream_tls)
	for _, m := range b.models {
		for _, be := range m.backends {
			s := be.Spec()
			if be.Target().Scheme != "https" {
				continue
			}
			host := strings.ToLower(be.Target().Host)
			p := profiles[s.TLS] // nil: upstream_tls (a discovered backend's block gone: the default too)
			if prev, seen := owner[host]; seen {
				if prev != s.TLS && byHost[host] != p {
					b.deps.Logger.Warn("upstream tls: backends at one host:port ask for different tls; the first one's is used",
						"model", m.cfg.Name, "backend", host, "used", tlsBlock(prev), "ignored", tlsBlock(s.TLS))
				}
				continue
			}
			owner[host] = s.TLS
			if p != nil {
				byHost[host] = p
			}
		}
	}
	// A body's write the backend stops taking is bounded as a silent
	// answer is (timeouts.stream_idle; Envoy's stream idle timeout counts
	// both directions, nginx's proxy_send_timeout is 60 s as its default).
	return b.deps.Transport.Router(cfg.Timeouts.Connect.D(), cfg.Timeouts.StreamIdle.D(),
		cfg.UpstreamClient == config.UpstreamLean, def, byHost), nil
}

func tlsBlock(key string) string {
	if key == "" {
		return "upstream_tls"
	}
	return key
}

func loadProfile(t config.UpstreamTLS, key string) (*proxy.TLSProfile, error) {
	bt, err := config.LoadUpstreamTLS(t, key)
	if err != nil {
		return nil, err
	}
	return &proxy.TLSProfile{Config: bt.Config, Fingerprint: bt.Fingerprint}, nil
}

package main

import (
	"context"
	"log/slog"
	"net"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
)

// runningGateway is Sluice running in-process on a loopback port.
type runningGateway struct {
	url   string
	admin string // the admin listener's base URL: /metrics
	app   *app.App
	stop  func() // shuts it down and waits for it
}

// startGateway runs Sluice with cfg on a free loopback port (cfg.Listen is
// ignored) and its admin listener on another, as demo.StartGateway does, keeping the App for the prototype
// worker.
func startGateway(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*runningGateway, error) {
	a, err := app.New(cfg, app.Source{}, logger)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	admin, err := a.ListenAdmin("127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(runCtx, ln); close(done) }()
	return &runningGateway{url: "http://" + ln.Addr().String(), admin: "http://" + admin.String(), app: a,
		stop: func() { cancel(); <-done }}, nil
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

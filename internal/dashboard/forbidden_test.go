package dashboard_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sluice-gw/sluice/internal/demo"
)

// An admin listener bound off loopback without admin.token answers other
// hosts 403 admin_token_required (the page itself, which holds no data,
// still loads): the page says why instead of "reconnecting (HTTP 403)"
// forever, and asks for no token (none would help).
func TestDashboardExplainsAForbiddenListener(t *testing.T) {
	host := ""
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			host = n.IP.String()
			break
		}
	}
	if host == "" {
		t.Skip("this host has no IPv4 address off loopback")
	}
	tab, problems := browser(t)
	_, srvs := simPool(t, 1)
	cfg := demo.GatewayConfig([]string{srvs[0].URL})
	cfg.Admin.Listen = net.JoinHostPort(host, "0")
	gw, err := demo.StartGateway(context.Background(), &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Stop)
	if !strings.Contains(gw.AdminURL, host) {
		t.Fatalf("admin listener at %s, want it on %s", gw.AdminURL, host)
	}
	if err := chromedp.Do(tab, chromedp.Navigate(gw.AdminURL+"/")); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "the refusal explained",
		`document.getElementById("conn").textContent.includes("admin.token") && document.getElementById("auth").hidden`)
}

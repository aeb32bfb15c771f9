package jobs

import (
	"errors"
	"fmt"
	"net/url"
	"syscall"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// ErrWebhookTarget is a webhook destination the sender refuses: an
// internal address (unless private targets are allowed) or a URL that is
// not absolute http(s).
var ErrWebhookTarget = errors.New("webhook target refused")

// ErrWebhookNumericHost is the ErrWebhookTarget of a host that ends in a
// number without being an IP literal (netguard.NumericHost): refused whether or not
// private targets are allowed, so its 400 says so rather than "private".
var ErrWebhookNumericHost = fmt.Errorf("%w: a host that ends in a number must be a dotted-quad IPv4 address", ErrWebhookTarget)

// dialGuard is the webhook client's net.Dialer Control func: netguard's
// check on the address actually dialled, after DNS resolution, so a name
// that resolves (or re-resolves, DNS rebinding) to an internal address is
// refused as well as a literal.
func dialGuard(network, address string, c syscall.RawConn) error {
	if err := netguard.RefuseInternal(network, address, c); err != nil {
		return fmt.Errorf("%w: %w (queue.allow_private_webhooks is off)", ErrWebhookTarget, err)
	}
	return nil
}

// CheckWebhookURL is the early check at submit time: the URL must be
// absolute http or https, and unless allowPrivate its host must not be
// internal (netguard.InternalHost). Names are only checked when the webhook is sent
// (dialGuard), on the address they resolve to then.
func CheckWebhookURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: want an absolute http or https URL", ErrWebhookTarget)
	}
	if netguard.NumericHost(u.Hostname()) {
		return fmt.Errorf("%w: %s", ErrWebhookNumericHost, u.Hostname())
	}
	if !allowPrivate && netguard.InternalHost(u.Hostname()) {
		return fmt.Errorf("%w: %s is an internal address", ErrWebhookTarget, u.Hostname())
	}
	return nil
}

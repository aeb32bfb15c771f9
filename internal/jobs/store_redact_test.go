package jobs

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// TestOpenHidesAQueuePasswordThatDoesNotParse: a NATS password holding
// '/', '?' or '#' written raw makes the client's url.Parse fail, and its
// error quoted the URL up to the password's '#' ("parse
// \"nats://u:NATS/MARK\": invalid port \":NATS\" after host", measured in
// the binary's log and on /status). The error now says to percent-encode
// it, naming the URL redacted, and still unwraps to the *url.Error.
func TestOpenHidesAQueuePasswordThatDoesNotParse(t *testing.T) {
	for _, u := range []string{"nats://user:SEC/RET#1@127.0.0.1:1", "nats://user:SEC?RET@127.0.0.1:1", "nats://127.0.0.1:2,nats://user:SEC/RET@127.0.0.1:1"} {
		_, err := Open(context.Background(), Options{URL: u})
		var ue *url.Error
		if err == nil || strings.Contains(err.Error(), "SEC") || strings.Contains(err.Error(), "RET") ||
			!errors.Is(err, err) || !errors.As(err, &ue) || !strings.Contains(err.Error(), telemetry.ErrURLPassword.Error()) {
			t.Errorf("Open(%q): %v", u, err)
		}
	}
}

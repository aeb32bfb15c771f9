package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxQueueInfo bounds the answer read from the admin listener.
const maxQueueInfo = 64 << 10

// ErrAdminUnreachable: AskQueueURL got no answer from the admin listener
// (refused, reset, timed out), as opposed to an answer it cannot use. Only
// then is "is the gateway running?" the question to ask its user.
var ErrAdminUnreachable = errors.New("no answer from the gateway's admin listener")

// AskQueueURL asks a gateway's admin listener (GET /worker/v1/queue,
// with admin.token) for the NATS URL its job queue lives on: what a
// `sluice worker` started without --nats connects to, so it attaches to
// that gateway's JetStream and not to whatever NATS listens on the
// default port. A nil client means http.DefaultClient; ctx bounds the call.
func AskQueueURL(ctx context.Context, admin, token string, client *http.Client) (string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	u := strings.TrimRight(admin, "/") + "/worker/v1/queue"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("ask the gateway for its queue: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask the gateway at %s for its queue: %w: %w", admin, ErrAdminUnreachable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQueueInfo))
	if err != nil {
		return "", fmt.Errorf("ask the gateway at %s for its queue: %w", admin, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		// The gateway's own words come first: a 403 admin_token_required
		// says the gateway has no worker credential at all, which no
		// --token can fix; a 401 that the token sent is not it.
		if says := adminSays(body); says != "" {
			return "", fmt.Errorf("the gateway's admin listener at %s refused the worker (%d): %s", admin, resp.StatusCode, says)
		}
		return "", fmt.Errorf("the gateway's admin listener at %s refused the worker (%d): check --token against admin.worker_token (admin.token when that is unset)", admin, resp.StatusCode)
	case http.StatusNotFound:
		return "", fmt.Errorf("the gateway at %s has no job queue to tell (queue disabled, or a gateway too old to say: pass --nats)", admin)
	default:
		return "", fmt.Errorf("ask the gateway at %s for its queue: status %d (pass --nats)", admin, resp.StatusCode)
	}
	var info struct {
		URL string `json:"nats_url"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.URL == "" {
		return "", fmt.Errorf("the gateway at %s named no queue URL (pass --nats)", admin)
	}
	return info.URL, nil
}

// adminSays is the message of the OpenAI-shaped error the admin listener
// answered with, "" when the body is not one. Printable ASCII only, at
// most 300 bytes: it goes to a terminal.
func adminSays(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	m := e.Error.Message
	if len(m) > 300 {
		m = m[:300]
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 0x20 || m[i] > 0x7e {
			return ""
		}
	}
	return m
}

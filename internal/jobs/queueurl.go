package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxQueueInfo bounds the answer read from the admin listener.
const maxQueueInfo = 64 << 10

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
		return "", fmt.Errorf("ask the gateway at %s for its queue: %w", admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQueueInfo))
	if err != nil {
		return "", fmt.Errorf("ask the gateway at %s for its queue: %w", admin, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return "", fmt.Errorf("the gateway's admin listener at %s refused the worker (%d): check --token against admin.worker_token (admin.token when that is unset)", admin, resp.StatusCode)
	case http.StatusNotFound:
		return "", fmt.Errorf("the gateway at %s has no job queue to tell (queue disabled, or a gateway too old to say: pass --nats)", admin)
	default:
		return "", fmt.Errorf("ask the gateway at %s for its queue: status %d", admin, resp.StatusCode)
	}
	var info struct {
		URL string `json:"nats_url"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.URL == "" {
		return "", fmt.Errorf("the gateway at %s named no queue URL (pass --nats)", admin)
	}
	return info.URL, nil
}

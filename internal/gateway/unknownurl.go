package gateway

import (
	"strings"

	"github.com/sluice-gw/sluice/internal/openai"
)

// v1Routes are the OpenAI routes the gateway serves under /v1, as written
// without it by a client whose base URL lacks /v1; the ones ending in "/"
// take an id after them.
var v1Routes = []string{"/chat/completions", "/completions", "/embeddings", "/responses", "/models",
	"/batches", "/files", "/moderations", "/audio/transcriptions", "/audio/translations",
	"/models/", "/batches/", "/files/", "/responses/", "/jobs/"}

// v1Hint is the end of an unknown URL's 404 message: for a path that is
// one of the /v1 routes without its /v1 (a client whose base URL is
// http://host:8080, which the OpenAI SDKs do not complete), where to send
// it. The 404 said only "Unknown request URL: POST /chat/completions", the
// commonest misconfiguration left to guess.
func v1Hint(path string) string {
	for _, r := range v1Routes {
		if path == r || (strings.HasSuffix(r, "/") && strings.HasPrefix(path, r) && len(path) > len(r)) {
			return " (did you mean " + openai.Echo("/v1"+path) + "? An OpenAI client's base URL ends in /v1)"
		}
	}
	return ""
}

package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/discovery"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/scrape"
)

// The Default column of docs/CONFIG.md: what reference_test.go prints
// over the parsed value, and the tests that keep it the code's.

// referenceFillIns replace the printed default: the keys referenceMinimal
// sets (validation requires them), and defaults applied where a value is
// read rather than written into the config, each from the constant or
// function the reading code uses (a literal here would drift from it).
var referenceFillIns = map[string]string{
	"models":                            "required: at least one",
	"models[].name":                     "required",
	"models[].backends":                 "none; required without discovery",
	"models[].backends[].url":           "required",
	"models[].slow_start":               DefaultSlowStart.String() + " (SlowStartFor)",
	"cache.redis.connect_timeout":       durationWords(DefaultRedisConnectTimeout),
	"rate_limits.redis.connect_timeout": durationWords(DefaultRedisConnectTimeout),
	// Applied where internal/ratelimit, internal/cache, internal/endpoint,
	// internal/jobs, internal/gateway and internal/app read the value.
	"rate_limits.store":                 "`" + RateLimitStoreLocal + "`",
	"rate_limits.max_keys":              strconv.Itoa(DefaultRateLimitMaxKeys) + " (0 or unset)",
	"rate_limits.redis.failure_mode":    "`" + FailOpen + "`",
	"rate_limits.redis.replicas":        strconv.Itoa(DefaultRateLimitRedisReplicas) + " (0 or unset)",
	"rate_limits.redis.timeout":         durationWords(DefaultRateLimitRedisTimeout),
	"rate_limits.redis.key_prefix":      "`" + DefaultRateLimitRedisPrefix + "`",
	"rate_limits.redis.db":              "0 (Redis' first database)",
	"cache.redis.timeout":               durationWords(DefaultCacheRedisTimeout),
	"cache.redis.key_prefix":            "`" + DefaultCacheRedisPrefix + "`",
	"cache.redis.local_ttl":             durationWords(DefaultCacheRedisLocalTTL),
	"cache.redis.db":                    "0 (Redis' first database)",
	"models[].policy":                   "`" + DefaultPolicy + "` (PolicyFor)",
	"models[].backends[].weight":        strconv.Itoa(endpoint.DefaultWeight) + " (0 or unset)",
	"models[].discovery[].weight":       strconv.Itoa(endpoint.DefaultWeight) + " (0 or unset)",
	"models[].max_wait":                 durationWords(Default().Admission.MaxWait.D()) + " (admission.max_wait)",
	"models[].discovery[].min_interval": durationWords(DefaultDNSMinInterval),
	"models[].discovery[].max_interval": durationWords(DefaultDNSMaxInterval),
	"models[].max_wait_batch":           durationWords(Default().Admission.MaxWaitBatch.D()) + " (admission.max_wait_batch)",
	"admission.delay_target": durationWords(Default().Admission.MaxWait.D()/4) + " interactive, " +
		durationWords(Default().Admission.MaxWaitBatch.D()/4) + " batch (a quarter of each class's objective: the model's max_wait, max_wait_batch)",
	"load_metrics.stale_after": durationWords(scrape.StaleAfterIntervals*Default().LoadMetrics.Interval.D()) +
		" (" + strconv.Itoa(scrape.StaleAfterIntervals) + "x load_metrics.interval)",
	"load_metrics.timeout":            durationWords(Default().LoadMetrics.Interval.D()) + " (load_metrics.interval)",
	"admission.max_queued_per_tenant": strconv.Itoa(Default().Admission.MaxQueued) + " (admission.max_queued)",
	"upstream_tls.min_version":        "`" + upstreamMinVersionWords() + "`",
	"upstream_tls.server_name":        "the URL's host",
	"auth.forwarded_header":           "`" + HeaderXForwardedFor + "`",
	"auth.jwt.algorithms":             "`" + strings.Join(JWT{}.JWTAlgorithms(), ", ") + "`",
	"forecast.snapshot":               "`<data dir>/" + ForecastSnapshotFile + "`",
	"queue.data_dir":                  "`$XDG_DATA_HOME/sluice`, else `~/.local/share/sluice` (DefaultDataDir)",
	"queue.listen":                    "`" + DefaultQueueListenHost + "`, a random port",
	"queue.replicas":                  strconv.Itoa(jobs.DefaultReplicas) + " (0 or unset)",
	// Inside list and map items (the smallest config has none of most):
	// applied where internal/gateway, internal/discovery and the
	// upstream TLS build read them.
	"auth.jwt.public_keys[].file":          "required",
	"auth.keys[].key":                      "required",
	"queue.batch_webhooks[].url":           "required (or the entry written as its URL)",
	"auth.keys[].priority":                 "`" + admission.Interactive.String() + "`",
	"auth.keys[].max_priority":             "`" + admission.Interactive.String() + "`",
	"auth.keys[].no_fallback":              "false",
	"auth.keys[].weight":                   strconv.FormatFloat(DefaultTenantWeight, 'g', -1, 64) + " (0 or unset)",
	"cache.rules[].mode":                   "`" + CacheDeterministic + "`",
	"cache.rules[].ttl":                    durationWords(Default().Cache.TTL.D()) + " (cache.ttl)",
	"models[].backends[].tls.min_version":  "`" + upstreamMinVersionWords() + "`",
	"models[].backends[].tls.server_name":  "the URL's host",
	"models[].discovery[].tls.min_version": "`" + upstreamMinVersionWords() + "`",
	"models[].discovery[].tls.server_name": "the URL's host",
	"models[].discovery[].type":            "required",
	"models[].discovery[].path":            "required (type file)",
	"models[].discovery[].name":            "required (type dns)",
	"models[].discovery[].service":         "required (type kubernetes)",
	"models[].discovery[].consul.service":  "required (type consul)",
	"models[].discovery[].record":          "`" + discovery.DefaultRecord + "`",
	"models[].discovery[].scheme":          "`" + discovery.DefaultScheme + "`",
	"models[].discovery[].consul.address":  "`" + discovery.DefaultConsulAddress + "`",
	"models[].discovery[].consul.scheme":   "`" + discovery.DefaultScheme + "`",
	"models[].discovery[].consul.wait":     durationWords(discovery.DefaultConsulWait) + " (0 or unset)",
}

// referenceUnset says what a key the code leaves unset (zero) does: off,
// none, or what takes its place. Every row whose default would read only
// "unset" needs an entry (TestReferenceUnsetIsExplained).
var referenceUnset = map[string]string{
	"admin.token":                              "loopback only: other hosts get 403",
	"admin.worker_token":                       "admin.token is the workers' credential too",
	"admission.max_queued_tokens":              "no bound",
	"admission.answer_token_wait":              "off: a non-streamed request is priced like a stream",
	"auth.jwt.audience":                        "required with JWTs on",
	"auth.jwt.hmac_secret":                     "no HS* tokens",
	"auth.jwt.issuer":                          "required with JWTs on",
	"auth.jwt.jwks_url":                        "none",
	"auth.jwt.public_keys":                     "none",
	"auth.jwt.shared_tenants":                  "none: a token's tenant is `jwt:<claim>`",
	"auth.keys":                                "open mode: an API key identifies nobody, callers are ip:<address>",
	"auth.trusted_proxies":                     "none: the connection's address",
	"breaker.slow_call":                        "off",
	"cache.redis.addrs":                        "no shared level",
	"cache.redis.bloom_keys":                   "off",
	"cache.redis.password":                     "no AUTH",
	"cache.redis.username":                     "no ACL user",
	"cache.rules":                              "none: " + CacheDeterministic + " for every request",
	"cache.stale_while_revalidate":             "off: expired entries are misses",
	"health.max_ejection_time":                 "every ejection lasts fail_timeout",
	"models[].backends[].api_key":              "none sent",
	"models[].backends[].engine":               "unknown: probed as a guess unless it has an api_key",
	"models[].backends[].max_concurrency":      "no cap",
	"models[].backends[].tls":                  upstreamTLSApplies,
	"models[].backends[].upstream_model":       "the request's model",
	"models[].discovery":                       "none",
	"models[].fallbacks":                       "none",
	"queue.batch_webhooks":                     "no batch events sent",
	"queue.batch_webhooks[].tenants":           "every tenant's batch events",
	"queue.url":                                "NATS embedded in the gateway",
	"queue.webhook_secret":                     "no webhooks: a request naming one is refused",
	"queue.worker_token":                       "no longer used",
	"rate_limits.global.requests":              "no limit",
	"rate_limits.global.tokens_per_minute":     "no limit",
	"rate_limits.keys":                         "none: per_key for every key",
	"rate_limits.per_ip.requests":              "no limit",
	"rate_limits.per_ip.tokens_per_minute":     "no limit",
	"rate_limits.per_key.requests":             "no limit",
	"rate_limits.per_key.tokens_per_minute":    "no limit",
	"rate_limits.per_tenant.requests":          "no limit",
	"rate_limits.per_tenant.tokens_per_minute": "no limit",
	"rate_limits.redis.addrs":                  "none; required with store: redis",
	"rate_limits.redis.password":               "no AUTH",
	"rate_limits.redis.username":               "no ACL user",
	"rate_limits.tenants":                      "none: per_tenant for every tenant",
	"server.memory_limit":                      "GOMEMLIMIT, else none",
	"tls.cert_file":                            "plain HTTP",
	"tls.key_file":                             "plain HTTP",
	"upstream_tls.ca_file":                     "the system roots",
	"upstream_tls.cert_file":                   "no client certificate",
	"upstream_tls.key_file":                    "no client certificate",
	// Inside list and map items.
	"auth.jwt.public_keys[].kid":              "the key verifies tokens without kid",
	"auth.keys[].tenant":                      "a tenant of its own, key:<hash of the key>",
	"cache.rules[].keys":                      "every key",
	"cache.rules[].models":                    "every model",
	"cache.rules[].tenants":                   "every tenant",
	"models[].backends[].tls.ca_file":         "the system roots",
	"models[].backends[].tls.cert_file":       "no client certificate",
	"models[].backends[].tls.key_file":        "no client certificate",
	"models[].discovery[].tls":                upstreamTLSApplies,
	"models[].discovery[].tls.ca_file":        "the system roots",
	"models[].discovery[].tls.cert_file":      "no client certificate",
	"models[].discovery[].tls.key_file":       "no client certificate",
	"models[].discovery[].api_key":            "none sent",
	"models[].discovery[].upstream_model":     "the request's model",
	"models[].discovery[].engine":             "unknown: probed as a guess unless it has an api_key",
	"models[].discovery[].max_concurrency":    "no cap",
	"models[].discovery[].port":               "type dns A: required; kubernetes: port_name, else the Service's only port",
	"models[].discovery[].port_name":          "port, else the Service's only port",
	"models[].discovery[].server":             "the first resolver of /etc/resolv.conf",
	"models[].discovery[].namespace":          "the kubeconfig context's, else the pod's own",
	"models[].discovery[].kubeconfig":         "in-cluster: the service account",
	"models[].discovery[].consul":             "type consul only",
	"models[].discovery[].consul.datacenter":  "the agent's own",
	"models[].discovery[].consul.tags":        "any",
	"models[].discovery[].consul.token":       "token_file, else CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE",
	"models[].discovery[].consul.token_file":  "token, else CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE",
	"rate_limits.keys[].requests":             "rate_limits.per_key.requests applies: no limit by default",
	"rate_limits.keys[].tokens_per_minute":    "rate_limits.per_key.tokens_per_minute applies: no limit by default",
	"rate_limits.tenants[].requests":          "rate_limits.per_tenant.requests applies: no limit by default",
	"rate_limits.tenants[].tokens_per_minute": "rate_limits.per_tenant.tokens_per_minute applies: no limit by default",
}

// upstreamTLSApplies is what an unset per-backend tls section means: the
// shared upstream_tls, with its own defaults.
var upstreamTLSApplies = "upstream_tls applies: by default the system roots, TLS " + upstreamMinVersionWords() +
	" and up, no client certificate"

// upstreamMinVersionWords is the TLS version LoadUpstreamTLS offers at
// least when min_version is unset, as the key writes it ("1.2").
func upstreamMinVersionWords() string {
	bt, err := LoadUpstreamTLS(UpstreamTLS{}, "upstream_tls")
	if err != nil {
		panic(err) // no files named: cannot fail
	}
	return strings.TrimPrefix(tls.VersionName(bt.Config.MinVersion), "TLS ")
}

// referenceDefault is a row's printed default: a fill-in, else the
// parsed value, with what "unset" means where the code leaves it zero.
func referenceDefault(r refRow) string {
	if d, ok := referenceFillIns[r.path]; ok {
		return d
	}
	if m, ok := referenceUnset[r.path]; ok && (r.def == "unset" || r.def == "—") {
		return "unset (" + m + ")"
	}
	return r.def
}

// referenceRows are docs/CONFIG.md's rows for the config data parses to,
// each with its printed default.
func referenceRows(t *testing.T, data []byte) []refRow {
	t.Helper()
	rows, err := parseRows(data)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func parseRows(data []byte) ([]refRow, error) {
	cfg, err := Parse(data)
	if err != nil {
		return nil, err
	}
	var rows []refRow
	collectRows(reflect.TypeFor[Config](), reflect.ValueOf(*cfg), "", &rows)
	return rows, nil
}

// A key whose default would print as a bare "unset" says what unset does
// (referenceUnset) or what takes its place (referenceFillIns): a new key
// left at zero fails here until its row is explained, so the reference
// cannot go back to rows a reader must guess.
func TestReferenceUnsetIsExplained(t *testing.T) {
	for _, r := range referenceRows(t, []byte(referenceMinimal)) {
		_, filled := referenceFillIns[r.path]
		_, explained := referenceUnset[r.path]
		bare := r.def == "unset" || r.def == "—" // "—": in a list or map item the smallest config has none of
		switch {
		case bare && !filled && !explained:
			t.Errorf("%s: default prints as a bare %q: add what unset does to referenceUnset (off, none, what takes its place), or its value in force to referenceFillIns from the constant the code uses", r.path, r.def)
		case !bare && explained:
			t.Errorf("%s: referenceUnset explains an unset key, but its default is %q", r.path, r.def)
		case filled && explained:
			t.Errorf("%s: in both referenceFillIns and referenceUnset", r.path)
		}
	}
}

// The defaults the reference prints for keys filled where they are read
// are the ones the reading code applies (its behaviour, not a copy of a
// number): a package changing its default fails here.
func TestReferenceDefaultsAreTheCodes(t *testing.T) {
	if !slices.Contains(routing.PolicyNames(), DefaultPolicy) {
		t.Errorf("DefaultPolicy %q is no routing policy (%v)", DefaultPolicy, routing.PolicyNames())
	}
	if got, want := PolicyFor(&Model{}), DefaultPolicy; got != want {
		t.Errorf("PolicyFor(unset) = %q, want %q", got, want)
	}
	w := strconv.Itoa(endpoint.Spec{}.Normalized().Weight)
	for _, p := range []string{"models[].backends[].weight", "models[].discovery[].weight"} {
		if !strings.HasPrefix(referenceFillIns[p], w+" ") {
			t.Errorf("%s: reference says %q, an unset weight is %s", p, referenceFillIns[p], w)
		}
	}
	if !strings.HasPrefix(referenceFillIns["rate_limits.max_keys"], strconv.Itoa(DefaultRateLimitMaxKeys)+" ") {
		t.Errorf("rate_limits.max_keys: reference says %q", referenceFillIns["rate_limits.max_keys"])
	}
	if got := referenceFillIns["upstream_tls.min_version"]; got != "`1.2`" {
		t.Errorf("upstream_tls.min_version: reference says %s, LoadUpstreamTLS offers %s and up", got, upstreamMinVersionWords())
	}
	if got := (JWT{}).JWTAlgorithms(); slices.Contains(got, "none") || slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "HS") }) {
		t.Errorf("unset auth.jwt.algorithms allows %v: never none, HS* only when listed", got)
	}

	// queue.data_dir's words: $XDG_DATA_HOME/sluice, else ~/.local/share/sluice.
	xdg := t.TempDir()
	t.Setenv("XDG_DATA_HOME", xdg)
	if got, want := DefaultDataDir(), filepath.Join(xdg, "sluice"); got != want {
		t.Errorf("DefaultDataDir with XDG_DATA_HOME = %q, want %q", got, want)
	}
	home := t.TempDir()
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", home)
	if got, want := DefaultDataDir(), filepath.Join(home, ".local", "share", "sluice"); got != want {
		t.Errorf("DefaultDataDir without XDG_DATA_HOME = %q, want %q", got, want)
	}
}

// The example "runs as is", and the values it writes uncommented are the
// defaults (its first line says so) unless marked "example": each such
// value outside the models list (whose entries are examples) is the
// default in force the reference prints.
func TestExampleValuesAreDefaults(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defaults := referenceRows(t, []byte(referenceMinimal))
	example := referenceRows(t, src)
	if len(defaults) != len(example) {
		t.Fatalf("%d rows for the defaults, %d for the example", len(defaults), len(example))
	}
	for i, d := range defaults {
		e := example[i]
		if d.path != e.path {
			t.Fatalf("row %d: %s against %s", i, d.path, e.path)
		}
		if strings.HasPrefix(d.path, "models") || d.def == e.def {
			continue
		}
		printed := referenceDefault(d)
		switch {
		case e.def == "none" && strings.HasPrefix(printed, "unset"): // an empty list or map written out
		case strings.HasPrefix(printed, e.def):
		default:
			t.Errorf("%s: examples/sluice.yaml writes %s, the default is %s", d.path, e.def, printed)
		}
	}
}

// commentedValue matches a commented-out key line: "# key: value  # text".
var commentedValue = regexp.MustCompile(`^\s*#\s*(?:- )?([a-z_]+):\s+([^#{]+?)\s*(?:#\s*(.*))?$`)

// The values examples/sluice.yaml shows commented out ("# leeway: 30s")
// are the defaults too, unless the line says "example": each one, set on
// the smallest config, parses to the default in force the reference
// prints. Keys inside lists (models, auth.keys, cache.rules) are
// templates, and a flow mapping is one example line; both are skipped.
func TestExampleCommentedValuesAreDefaults(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	defaults := referenceRows(t, []byte(referenceMinimal))
	checked := 0
	for i, d := range defaults {
		if strings.Contains(d.path, "[]") || strings.HasPrefix(d.path, "models") {
			continue
		}
		at := exampleLine(lines, d.path)
		if at < 0 {
			continue
		}
		m := commentedValue.FindStringSubmatch(lines[at])
		leaf := d.path[strings.LastIndex(d.path, ".")+1:]
		if m == nil || m[1] != leaf || strings.Contains(m[3], "example") {
			continue
		}
		value := m[2]
		if strings.Contains(value, "${") || strings.Contains(value, " ") && !strings.HasPrefix(value, `"`) {
			continue // an environment reference, or prose ("max_gap: no effect ...")
		}
		checked++
		set, err := parseRows([]byte(referenceMinimal + nested(d.path, value)))
		if err != nil {
			t.Errorf("examples/sluice.yaml:%d: %s shown as %s, which alone is refused (%v): mark it \"example\" or show the default",
				at+1, d.path, value, err)
			continue
		}
		// An empty list or map written out is the unset one (the code
		// reads its length).
		printed := referenceDefault(d)
		if got := set[i].def; got != d.def && got != "none" && printed != got && !strings.HasPrefix(printed, got+" ") {
			t.Errorf("examples/sluice.yaml:%d: %s shown as %s (reads %s), the default is %s; mark it \"example\" or show the default",
				at+1, d.path, value, got, printed)
		}
	}
	if checked < 20 {
		t.Errorf("only %d commented-out values checked: the line matching broke", checked)
	}
}

// A default names a value, or says what takes the key's place: not only
// another key's name ("admission.max_wait", "unset (upstream_tls)"), which
// leaves the reader to look that key up and guess whether it applies as
// set or as its own default; and a duration's default carries a duration.
func TestReferenceDefaultsNameValues(t *testing.T) {
	rows := referenceRows(t, []byte(referenceMinimal))
	names := map[string]bool{}
	for _, r := range rows {
		names[r.path] = true
		names[r.path[strings.LastIndex(r.path, ".")+1:]] = true
	}
	for _, r := range rows {
		d := referenceDefault(r)
		said := d
		if inner, ok := strings.CutPrefix(d, "unset ("); ok {
			said = strings.TrimSuffix(inner, ")")
		}
		said = strings.TrimSuffix(strings.Trim(said, "`"), "'s")
		if names[said] {
			t.Errorf("%s: default %q is another key's name: print its value in force and the rule", r.path, d)
		}
		if r.typ == "duration" && !strings.HasPrefix(d, "unset") && !strings.ContainsAny(d, "0123456789") {
			t.Errorf("%s: default %q names no duration", r.path, d)
		}
	}
}

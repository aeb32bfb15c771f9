package scaling

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the models' signals as gauges, computed at scrape time
// from signals (the gateway's current pools), so the request path pays
// only for the Meter's events and models removed by a reload disappear.
// Register it on the caller's registry.
type Collector struct {
	signals                              func() []Signal
	desired, arrivals, arrivalTokens     *prometheus.Desc
	demand, serviceRequests, serviceToks *prometheus.Desc
	awaited, awaitedLimit                *prometheus.Desc
}

// NewCollector returns a collector over signals, called on every scrape.
func NewCollector(signals func() []Signal) *Collector {
	model := []string{"model"}
	backend := []string{"model", "backend"}
	return &Collector{
		signals: signals,
		desired: prometheus.NewDesc("sluice_model_desired_backends",
			"Backends the model needs now to meet its TTFT objective, this replica's share: sum() across gateway replicas is the model's need (docs/DEPLOY.md, Scaling signals).", model, nil),
		arrivals: prometheus.NewDesc("sluice_model_arrival_requests_per_second",
			"Requests asking the model's pool for a slot, per second, decayed over scaling.window (cache hits, coalesced followers and queued jobs excluded).", model, nil),
		arrivalTokens: prometheus.NewDesc("sluice_model_arrival_tokens_per_second",
			"Estimated tokens (prompt and answer) of those requests per second, decayed over scaling.window.", model, nil),
		demand: prometheus.NewDesc("sluice_model_demand_requests_per_second",
			"The arrival rate desired_backends plans for: the measured one, or a larger forecast at now+lead.", model, nil),
		serviceRequests: prometheus.NewDesc("sluice_backend_service_requests_per_second",
			"Completions per second the backend sustains with all its slots busy (slots x completions per slot-second held), measured by this replica; a property of the backend: avg() across replicas.", backend, nil),
		awaited: prometheus.NewDesc("sluice_model_awaited_clients",
			"Requests refused for capacity whose clients are expected back (Retry-After plus 5 s not yet passed): their return is no new demand, and they count with the requests in flight. Keyed by a hash of the client's request, at most sluice_model_awaited_clients_limit per model; past it a refusal is not awaited and its retry counts as an arrival.", model, nil),
		awaitedLimit: prometheus.NewDesc("sluice_model_awaited_clients_limit",
			"The most refused requests awaited per model.", nil, nil),
		serviceToks: prometheus.NewDesc("sluice_backend_service_tokens_per_second",
			"Tokens (prompt and answer) per second the backend sustains with all its slots busy, from completions that reported usage; avg() across replicas.", backend, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.desired, c.arrivals, c.arrivalTokens, c.demand, c.serviceRequests, c.serviceToks, c.awaited, c.awaitedLimit} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	signals := c.signals()
	if len(signals) > 0 {
		gauge(c.awaitedLimit, maxAwaited)
	}
	for _, s := range signals {
		gauge(c.desired, s.DesiredBackends, s.Model)
		gauge(c.awaited, float64(s.AwaitedClients), s.Model)
		gauge(c.arrivals, s.ArrivalRequestsPerSecond, s.Model)
		gauge(c.arrivalTokens, s.ArrivalTokensPerSecond, s.Model)
		gauge(c.demand, s.DemandRequestsPerSecond, s.Model)
		for _, b := range s.BackendsService {
			if !b.Measured {
				continue
			}
			gauge(c.serviceRequests, b.RequestsPerSecond, s.Model, b.Backend)
			gauge(c.serviceToks, b.TokensPerSecond, s.Model, b.Backend)
		}
	}
}

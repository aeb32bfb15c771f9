package scalesim

import (
	"container/heap"
	"fmt"
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// Options are the run's settings. Durations marked (trace) are in trace
// time and compressed with the arrivals; the others are not.
type Options struct {
	Server    sim.Config
	ColdStart time.Duration // (trace) from a server's start to its first request
	Sync      time.Duration // (trace) controller period (the HPA's sync)
	SLO       time.Duration // time to first token a request should get
	MaxWait   time.Duration // gateway queue limit: longer waits are refused
	// InitialServers of the pool at the start, all serving.
	InitialServers int
}

// View is the pool as a controller sees it at a tick.
type View struct {
	Now               float64 // sim seconds
	Provisioned       int     // serving plus starting (not leaving)
	Serving, Starting int
	Queued            int
	InUse             int     // requests on serving servers (the gateway's slots in use)
	Utilisation       float64 // busy slots / serving slots, mean since the last tick
	Slots             int     // per server
	ServingNames      []string
}

// Controller decides the pool's size at each tick.
type Controller interface {
	Name() string
	Desired(v View) int
}

// observer is implemented by controllers that measure the traffic.
type observer interface {
	arrived(now float64, r *request)
	waited(now float64, wait float64)
	served(now float64, r *request, srv string, slots int, full bool)
}

// forecaster is implemented by controllers with a forecast to plot,
// in servers.
type forecaster interface{ forecastServers() float64 }

// Point is the pool at one trace minute.
type Point struct {
	Provisioned, Serving int
	Forecast             float64 // servers the forecast asks for; NaN without one
}

// Result is one controller's run.
type Result struct {
	Controller string
	Requests   []request
	// Timeline has one point per trace minute.
	Timeline []Point
	// ServerSeconds is simulated seconds × servers over the replay
	// (starting and leaving ones included: they cost).
	ServerSeconds float64
}

type eventKind uint8

const (
	evStepEnd eventKind = iota
	evReady
	evTick
)

type event struct {
	t    float64
	kind eventKind
	srv  *server
	seq  uint64
}

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].t != e[j].t {
		return e[i].t < e[j].t
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// pool is one run's state.
type pool struct {
	cfg      sim.Config
	opt      Options
	w        *Workload
	ctl      Controller
	obs      observer
	servers  []*server
	nextID   int
	queue    []*request
	ev       events
	seq      uint64
	finished []*request

	// integrals for utilisation and cost
	last          float64
	busy, serving int
	busyInt       float64
	servingInt    float64
	serverInt     float64
	tickBusy      float64
	tickServing   float64
	end           float64 // the replay's end: cost is counted up to it
}

// Run replays w against a pool run by ctl.
func Run(w *Workload, opt Options, ctl Controller) (*Result, error) {
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("scalesim: %w", err)
	}
	p := &pool{cfg: withDefaults(opt.Server), opt: opt, w: w, ctl: ctl, end: w.Duration()}
	p.obs, _ = ctl.(observer)
	reqs := w.arrivals(&p.cfg)
	for range max(opt.InitialServers, 1) {
		p.addServer(0, 0)
	}
	syncSim := opt.Sync.Seconds() / w.Compress
	p.push(event{t: syncSim, kind: evTick})
	end := w.Duration()
	minute := 60 / w.Compress
	res := &Result{Controller: ctl.Name(), Timeline: make([]Point, 0, int(end/minute)+1)}
	fc, _ := ctl.(forecaster)
	record := func(now float64) {
		for float64(len(res.Timeline))*minute <= now && float64(len(res.Timeline))*minute < end {
			pt := Point{Forecast: math.NaN()}
			for _, s := range p.servers {
				if !s.leaving {
					pt.Provisioned++
					if s.readyAt <= now {
						pt.Serving++
					}
				}
			}
			if fc != nil {
				pt.Forecast = fc.forecastServers()
			}
			res.Timeline = append(res.Timeline, pt)
		}
	}
	next := 0
	for {
		now := math.Inf(1)
		if next < len(reqs) {
			now = reqs[next].arrival
		}
		fromHeap := len(p.ev) > 0 && p.ev[0].t <= now
		if fromHeap {
			now = p.ev[0].t
		}
		if math.IsInf(now, 1) {
			break
		}
		p.account(now)
		if !fromHeap {
			r := &reqs[next]
			next++
			p.queue = append(p.queue, r)
			if p.obs != nil {
				p.obs.arrived(now, r)
			}
			p.dispatch(now)
			continue
		}
		e := heap.Pop(&p.ev).(event)
		switch e.kind {
		case evStepEnd:
			p.stepEnd(now, e.srv)
		case evReady:
			if !e.srv.leaving { // removed while starting: never serves
				p.serving++
				p.dispatch(now)
			}
		case evTick:
			record(now)
			p.tick(now)
			if now < end+opt.MaxWait.Seconds() || len(p.queue) > 0 {
				p.push(event{t: now + syncSim, kind: evTick})
			}
		}
	}
	record(end)
	res.Requests = reqs
	res.ServerSeconds = p.serverInt
	return res, nil
}

func (p *pool) push(e event) {
	p.seq++
	e.seq = p.seq
	heap.Push(&p.ev, e)
}

// account advances the busy, serving and server integrals to now.
func (p *pool) account(now float64) {
	dt := now - p.last
	if dt > 0 {
		p.busyInt += float64(p.busy) * dt
		p.servingInt += float64(p.serving) * dt
		if in := min(now, p.end) - p.last; in > 0 {
			p.serverInt += float64(len(p.servers)) * in
		}
		p.last = now
	}
}

func (p *pool) addServer(now, cold float64) {
	s := &server{id: p.nextID, readyAt: now + cold}
	p.nextID++
	p.servers = append(p.servers, s)
	if cold <= 0 {
		p.serving++
		return
	}
	p.push(event{t: s.readyAt, kind: evReady, srv: s})
}

// dispatch refuses queued requests past MaxWait and sends the rest, in
// order, to the least loaded serving server with a free slot.
func (p *pool) dispatch(now float64) {
	maxWait := p.opt.MaxWait.Seconds()
	for len(p.queue) > 0 {
		r := p.queue[0]
		if now-r.arrival > maxWait {
			r.refused = true
			p.queue = p.queue[1:]
			continue
		}
		var best *server
		for _, s := range p.servers {
			if s.leaving || s.readyAt > now || s.outstanding() >= p.cfg.Slots {
				continue
			}
			if best == nil || s.outstanding() < best.outstanding() {
				best = s
			}
		}
		if best == nil {
			return
		}
		p.queue = p.queue[1:]
		r.dispatched = now
		best.waiting = append(best.waiting, r)
		if p.obs != nil {
			p.obs.waited(now, now-r.arrival)
		}
		if !best.stepping {
			p.startStep(now, best)
		}
	}
}

func (p *pool) startStep(now float64, s *server) {
	before := len(s.running)
	d, ok := s.startStep(&p.cfg)
	p.busy += len(s.running) - before
	if !ok {
		s.stepping = false
		return
	}
	s.stepping = true
	s.stepEnd = now + d
	p.push(event{t: s.stepEnd, kind: evStepEnd, srv: s})
}

func (p *pool) stepEnd(now float64, s *server) {
	before := len(s.running)
	p.finished = s.finishStep(now, p.finished[:0])
	p.busy -= before - len(s.running)
	if p.obs != nil {
		for _, r := range p.finished {
			full := s.outstanding()+1 >= p.cfg.Slots || len(p.queue) > 0
			p.obs.served(now, r, serverName(s), p.cfg.Slots, full)
		}
	}
	p.startStep(now, s)
	if s.leaving && s.idle() {
		p.remove(s)
	}
	p.dispatch(now)
}

func (p *pool) remove(s *server) {
	for i, x := range p.servers {
		if x == s {
			p.servers = append(p.servers[:i], p.servers[i+1:]...)
			return
		}
	}
}

func serverName(s *server) string { return fmt.Sprintf("b%d", s.id) }

// tick shows the controller the pool and applies its decision.
func (p *pool) tick(now float64) {
	p.dispatch(now) // refuses what waited too long, so Queued is current
	v := View{Now: now, Queued: len(p.queue), Slots: p.cfg.Slots}
	for _, s := range p.servers {
		if s.leaving {
			continue
		}
		if s.readyAt <= now {
			v.Serving++
			v.ServingNames = append(v.ServingNames, serverName(s))
			v.InUse += s.outstanding()
		} else {
			v.Starting++
		}
	}
	v.Provisioned = v.Serving + v.Starting
	if ds := p.servingInt - p.tickServing; ds > 0 {
		v.Utilisation = (p.busyInt - p.tickBusy) / (ds * float64(p.cfg.Slots))
	}
	p.tickBusy, p.tickServing = p.busyInt, p.servingInt
	want := max(p.ctl.Desired(v), 1)
	p.resize(now, v.Provisioned, want)
}

// resize adds servers (serving after the cold start) or removes them:
// those still starting first, newest first, then the least loaded
// serving ones, which leave when their batch is done.
func (p *pool) resize(now float64, have, want int) {
	cold := p.opt.ColdStart.Seconds() / p.w.Compress
	for ; have < want; have++ {
		p.addServer(now, cold)
	}
	for have > want {
		var pick *server
		for _, s := range p.servers {
			if s.leaving {
				continue
			}
			switch {
			case pick == nil:
				pick = s
			case (s.readyAt > now) != (pick.readyAt > now):
				if s.readyAt > now {
					pick = s
				}
			case s.readyAt > now:
				if s.readyAt > pick.readyAt {
					pick = s
				}
			case s.outstanding() < pick.outstanding():
				pick = s
			}
		}
		if pick == nil {
			return
		}
		pick.leaving = true
		if pick.readyAt <= now {
			p.serving--
		}
		if pick.idle() {
			p.remove(pick)
		}
		have--
	}
}

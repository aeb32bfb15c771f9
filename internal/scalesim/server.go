package scalesim

import (
	"github.com/sluice-gw/sluice/internal/sim"
)

// request is one replayed request and what happened to it.
type request struct {
	arrival     float64 // sim seconds
	prompt, out int
	dispatched  float64
	firstToken  float64 // 0: none yet
	done        float64
	refused     bool
	generated   int
}

// server is one simulated inference server (sim's engine model on a
// virtual clock).
type server struct {
	id       int
	readyAt  float64 // serves from this sim time on
	leaving  bool    // removed: takes no new request, leaves when empty
	waiting  []*request
	running  []*request
	kvUsed   int
	stepping bool
	stepEnd  float64
}

func (s *server) outstanding() int { return len(s.waiting) + len(s.running) }

func (s *server) idle() bool { return s.outstanding() == 0 }

// startStep admits waiting requests in FIFO order while a slot is free and
// the KV budget holds them, and returns the step's duration; false when
// there is nothing to run.
func (s *server) startStep(cfg *sim.Config) (float64, bool) {
	prefill := 0
	for len(s.waiting) > 0 && len(s.running) < cfg.Slots {
		r := s.waiting[0]
		if need := r.prompt + r.out; s.kvUsed+need > cfg.KVTokens && len(s.running) > 0 {
			break
		}
		s.waiting = s.waiting[1:]
		s.kvUsed += r.prompt + r.out
		prefill += r.prompt
		s.running = append(s.running, r)
	}
	if len(s.running) == 0 {
		return 0, false
	}
	d := cfg.DecodeStepBase.Seconds() + float64(len(s.running))*cfg.DecodeStepPerSeq.Seconds() +
		float64(prefill)/cfg.PrefillTokensPerSec
	return d, true
}

// finishStep gives every running sequence a token at now and returns the
// requests that finished.
func (s *server) finishStep(now float64, finished []*request) []*request {
	kept := s.running[:0]
	for _, r := range s.running {
		r.generated++
		if r.firstToken == 0 {
			r.firstToken = now
		}
		if r.generated >= r.out {
			r.done = now
			s.kvUsed -= r.prompt + r.out
			finished = append(finished, r)
			continue
		}
		kept = append(kept, r)
	}
	clear(s.running[len(kept):])
	s.running = kept
	return finished
}

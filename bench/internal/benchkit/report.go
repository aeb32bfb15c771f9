package benchkit

import (
	"fmt"
	"strings"
	"time"
)

// Run is what every report says about its run; the benchmarks' reports
// embed it (its JSON fields stay at the top level).
type Run struct {
	Command string    `json:"command"`
	Machine Machine   `json:"machine"`
	Started time.Time `json:"started"`
	Elapsed float64   `json:"elapsed_s"`
}

// StartRun records the command and the machine now.
func StartRun(command string, now time.Time) Run {
	return Run{Command: command, Machine: ReadMachine(), Started: now.UTC()}
}

// End records the load average after the run and its length.
func (r *Run) End(now time.Time) {
	r.Machine.LoadAfter = Loadavg()
	r.Elapsed = now.Sub(r.Started).Seconds()
}

// RunHeader is Header for r.
func (e *ErrWriter) RunHeader(r Run) { e.Header(r.Command, r.Machine, r.Started, r.Elapsed) }

// Col is a markdown table column: its heading, and whether its cells are
// figures (right-aligned).
type Col struct {
	Name string
	Num  bool
}

// Cols builds columns from headings; a heading ending in ">" is a figure
// column (the marker is dropped).
func Cols(names ...string) []Col {
	cs := make([]Col, len(names))
	for i, n := range names {
		name, num := strings.CutSuffix(n, ">")
		cs[i] = Col{Name: name, Num: num}
	}
	return cs
}

// TableHead writes a markdown table's heading and alignment rows.
func (e *ErrWriter) TableHead(cols []Col) {
	var head, rule strings.Builder
	for _, c := range cols {
		head.WriteString("| " + c.Name + " ")
		if c.Num {
			rule.WriteString("|--:")
		} else {
			rule.WriteString("|---")
		}
	}
	e.Printf("%s|\n%s|\n", head.String(), rule.String())
}

// Row writes one table row; an empty cell is written "| |".
func (e *ErrWriter) Row(cells ...string) {
	var b strings.Builder
	b.WriteString("|")
	for _, c := range cells {
		if c != "" {
			b.WriteString(" " + c)
		}
		b.WriteString(" |")
	}
	e.Printf("%s\n", b.String())
}

// OrDash is the formatted value when ok, else "-": a cell without a
// figure (no refusals, no queue, a leg that did not run it).
func OrDash(ok bool, format string, args ...any) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf(format, args...)
}

// Target is one target of an issue and the measurement against it. NA
// marks a target that could not be measured in this run (then Pass means
// nothing).
type Target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
	NA       bool   `json:"na,omitempty"`
}

// Verdicts are the words a targets table uses for a pass and a miss.
type Verdicts struct{ Pass, Miss string }

// The two wordings the reports use.
var (
	PassFail = Verdicts{Pass: "pass", Miss: "**FAIL**"}
	PassMiss = Verdicts{Pass: "PASS", Miss: "**MISS**"}
)

// Targets writes a targets table whose first column is headed first.
func (e *ErrWriter) Targets(first string, ts []Target, v Verdicts) {
	e.TableHead([]Col{{Name: first}, {Name: "measured"}, {Name: "result"}})
	for _, t := range ts {
		r := v.Miss
		switch {
		case t.NA:
			r = "n/a"
		case t.Pass:
			r = v.Pass
		}
		e.Row(t.Name, t.Measured, r)
	}
}

package benchkit

import (
	"strings"
	"testing"
)

func TestTableWritesMarkdown(t *testing.T) {
	var b strings.Builder
	ew := &ErrWriter{W: &b}
	ew.TableHead(Cols("name", "share %>"))
	ew.Row("a", "50%")
	ew.Row("**total**", "")
	want := "| name | share % |\n|---|--:|\n| a | 50% |\n| **total** | |\n"
	if b.String() != want || ew.Err != nil {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTargetsVerdicts(t *testing.T) {
	var b strings.Builder
	ew := &ErrWriter{W: &b}
	ew.Targets("target (issue 4)", []Target{{Name: "x", Measured: "1", Pass: true}, {Name: "y", Measured: "2"}, {Name: "z", Measured: "n/a: not run", NA: true}}, PassMiss)
	want := "| target (issue 4) | measured | result |\n|---|---|---|\n| x | 1 | PASS |\n| y | 2 | **MISS** |\n| z | n/a: not run | n/a |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestByValue(t *testing.T) {
	if got := ByValue(map[string]float64{"timeout": 2, "full": 7, "deadline": 2}); got != "full 7, deadline 2, timeout 2" {
		t.Errorf("ByValue = %q", got)
	}
	if got := ByValue(nil); got != "-" {
		t.Errorf("ByValue(nil) = %q", got)
	}
	ms := []Metric{{Name: "r", Labels: `{reason="full"}`, Value: 3}, {Name: "r", Labels: `{reason="full",model="b"}`, Value: 1}, {Name: "r", Labels: `{reason="x"}`}}
	if got := ByLabel(ms, "r", "reason"); len(got) != 1 || got["full"] != 4 {
		t.Errorf("ByLabel = %v", got)
	}
	if got := SumWhere(ms, "r", "model", "b"); got != 1 {
		t.Errorf("SumWhere = %v", got)
	}
}

func TestProgressNumbersLegs(t *testing.T) {
	var b strings.Builder
	p := &Progress{W: &b, Legs: 1}
	p.Leg("first %d", 1)
	p.Leg("an extra one")
	p.Printf("done")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "[1/1] first 1 (load avg ") || !strings.HasPrefix(lines[1], "[2/2] an extra one (load avg ") || lines[2] != "done" {
		t.Errorf("progress lines %q", lines)
	}
	(&Progress{}).Leg("silent") // no writer: nothing to write, no panic
}

func TestSplitList(t *testing.T) {
	if got := SplitList(" a, ,b ,"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("SplitList = %q", got)
	}
}

func TestOrDash(t *testing.T) {
	if got := OrDash(false, "%d", 3); got != "-" {
		t.Errorf("OrDash(false) = %q", got)
	}
	if got := OrDash(true, "%.0f%%", 42.4); got != "42%" {
		t.Errorf("OrDash(true) = %q", got)
	}
}

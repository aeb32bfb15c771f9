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

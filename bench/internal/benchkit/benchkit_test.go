package benchkit

import "testing"

func TestLabel(t *testing.T) {
	l := `{model="m",subclass="x",class="interactive",le="0.001"}`
	if got := Label(l, "class"); got != "interactive" {
		t.Errorf("class = %q", got)
	}
	if got := Label(l, "le"); got != "0.001" {
		t.Errorf("le = %q", got)
	}
	if got := Label(l, "missing"); got != "" {
		t.Errorf("missing = %q", got)
	}
}

func TestCommandLineQuotes(t *testing.T) {
	if got := CommandLine("./bench/x", []string{"--a", "b c", ""}); got != `go run ./bench/x --a "b c" ""` {
		t.Fatalf("got %s", got)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/demo.sh, the README's first command, run where a first-time
// user may run it: with HOME unset (a bare container, `env -i`), with a
// home whose ~/.cache cannot be created, from a checkout whose path has a
// space. It used to stop at once with "HOME: unbound variable" or
// mkdir's "Not a directory" (and `go build` would have failed on its own
// caches under the same HOME). Here `go build` is replaced by a wrapper
// that checks what the real build needs (the caches `go env` then names
// can be written) and writes a stand-in binary that prints its
// arguments: the test is about the script, not a four-minute build;
// every other go command is the real one.
func TestDemoScriptWithoutAWritableHome(t *testing.T) {
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go on PATH")
	}
	src, err := os.ReadFile("../../scripts/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	checkout := filepath.Join(t.TempDir(), "a checkout")
	if err := os.MkdirAll(filepath.Join(checkout, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(checkout, "scripts", "demo.sh")
	if err := os.WriteFile(script, src, 0o755); err != nil {
		t.Fatal(err)
	}
	pathDir := t.TempDir()
	wrapper := `#!/bin/sh
if [ "$1" != build ]; then exec "` + realGo + `" "$@"; fi
for v in GOCACHE GOMODCACHE; do
  d=$("` + realGo + `" env $v)
  if [ -z "$d" ] || [ "$d" = off ] || ! mkdir -p "$d" 2>/dev/null || [ ! -w "$d" ]; then
    echo "go: $v ($d) cannot be used" >&2; exit 1
  fi
done
[ "$2" = -o ] || { echo "go: want build -o PATH" >&2; exit 1; }
printf '#!/bin/sh\necho "stand-in sluice: $*"\n' > "$3" && chmod +x "$3"
`
	if err := os.WriteFile(filepath.Join(pathDir, "go"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(t.TempDir(), "home-is-a-file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, home := range map[string][]string{
		"HOME unset":             nil,
		"~/.cache not creatable": {"HOME=" + notADir},
	} {
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			env := append([]string{"PATH=" + pathDir + string(os.PathListSeparator) + os.Getenv("PATH"), "TMPDIR=" + tmp}, home...)
			cmd := exec.Command("bash", script, "--duration", "1s")
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("demo.sh: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "stand-in sluice: demo --duration 1s") {
				t.Fatalf("demo.sh did not run the demo it built:\n%s", out)
			}
			if !strings.Contains(string(out), "building into "+tmp) {
				t.Fatalf("demo.sh did not say where it builds instead:\n%s", out)
			}
		})
	}
}

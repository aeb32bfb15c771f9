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

// scripts/test.sh (what CI runs, with no stdin and no terminal) installs
// what the tests need without a question: apt-get with -y under
// DEBIAN_FRONTEND=noninteractive (a debconf prompt, e.g. tzdata's, would
// wait on a CI runner), sudo -n as a non-root user (a password prompt
// fails at once instead of hanging), and the package lists updated once,
// before the first install (the nats-server install used to run with no
// update: "Unable to locate package" on a fresh container). Its
// apt_install is run here against a stand-in apt-get, sudo and id that
// record how they were called.
func TestTestScriptInstallsWithoutAsking(t *testing.T) {
	src, err := os.ReadFile("../../scripts/test.sh")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i := strings.Index(s, "apt_updated=\"\"\n")
	j := strings.Index(s[max(i, 0):], "\n}\n")
	if i < 0 || j < 0 {
		t.Fatal("scripts/test.sh has no apt_install function: its apt-get and sudo calls may ask questions CI cannot answer")
	}
	fn := s[i : i+j+3]
	for _, nonRoot := range []bool{false, true} {
		dir := t.TempDir()
		log := filepath.Join(dir, "calls")
		uid := "0"
		if nonRoot {
			uid = "1000"
		}
		stubs := map[string]string{
			"apt-get": `echo "apt-get DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "` + log + `"`,
			"sudo":    `echo "sudo $1" >> "` + log + `"; [ "$1" = -n ] || exit 1; shift; exec "$@"`,
			"id":      `echo ` + uid,
		}
		for name, body := range stubs {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+fn+"apt_install redis-server\napt_install nats-server\n")
		cmd.Env = []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt_install (uid %s): %v\n%s", uid, err, out)
		}
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		want := "apt-get DEBIAN_FRONTEND=noninteractive update -qq\n" +
			"apt-get DEBIAN_FRONTEND=noninteractive install -y -qq redis-server\n" +
			"apt-get DEBIAN_FRONTEND=noninteractive install -y -qq nats-server\n"
		if nonRoot {
			want = "sudo -n\n" + strings.ReplaceAll(want, "\napt-get", "\nsudo -n\napt-get")
		}
		if got := string(b); got != want {
			t.Errorf("uid %s: calls\n%s\nwant\n%s", uid, got, want)
		}
	}
}

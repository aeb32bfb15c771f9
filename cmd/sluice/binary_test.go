package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// builtBinary is this command built once per test process: the tests that
// run the real binary (signals, exit statuses, kills, chaos) share it
// rather than each paying for a build.
var builtBinary struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// sluiceBinary returns the path of this command's binary, building it on
// the first call, as a user does: with scripts/build.sh, which stamps the
// commit (TestVersionNamesTheCommit). It lives in the test process's data home (datadir.Main
// points XDG_DATA_HOME at a temporary directory and removes it at exit).
func sluiceBinary(t *testing.T) string {
	t.Helper()
	builtBinary.once.Do(func() {
		dir := filepath.Join(os.Getenv("XDG_DATA_HOME"), "bin")
		if builtBinary.err = os.MkdirAll(dir, 0o755); builtBinary.err != nil {
			return
		}
		builtBinary.path = filepath.Join(dir, "sluice")
		builtBinary.out, builtBinary.err = exec.Command("bash", filepath.Join("..", "..", "scripts", "build.sh"), "-o", builtBinary.path).CombinedOutput()
	})
	if builtBinary.err != nil {
		t.Fatalf("build: %v\n%s", builtBinary.err, builtBinary.out)
	}
	return builtBinary.path
}

// privateBinary is sluiceBinary under another path in t's temporary
// directory (a hard link; a copy across file systems), for a test that
// finds its processes by their executable's path (processesOf): no other
// test's process runs from it.
func privateBinary(t *testing.T) string {
	t.Helper()
	shared := sluiceBinary(t)
	bin := filepath.Join(t.TempDir(), "sluice")
	if os.Link(shared, bin) == nil {
		return bin
	}
	src, err := os.ReadFile(shared)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

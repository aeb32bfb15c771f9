package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/sim"
)

// imageUser is the Dockerfile's USER; the Kubernetes test checks the
// Deployment's runAsUser against the same line.
const imageUser = "65532:65532"

// TestImage builds the image with scripts/image.sh (static binary, then
// the scratch Dockerfile) and runs it with podman: the default command is
// the demo, the image holds the binary and CA bundle and no shell, and
// `serve` answers through a real backend. It skips, saying why, where
// podman is missing or this machine cannot run containers (no user
// namespaces for rootless podman, cgroups or rlimits a runtime refuses).
func TestImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("podman is not installed (apt-get install podman runc); scripts/image.sh builds the image by hand")
	}
	tag := fmt.Sprintf("localhost/sluice-image-test:%d", os.Getpid())
	build := exec.Command("../scripts/image.sh", tag)
	build.Env = append(os.Environ(), "SLUICE_VERSION=image-test", "CONTAINER_TOOL=podman")
	if out, err := build.CombinedOutput(); err != nil {
		if cannotRunContainers(out) {
			t.Skipf("podman cannot build images on this machine: %s", lastLine(out))
		}
		t.Fatalf("scripts/image.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", tag).Run() })

	run := podmanRunner(t, tag)
	t.Run("config", func(t *testing.T) {
		out := podman(t, "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}", tag)
		if want := imageUser + ` ["/usr/local/bin/sluice"] ["demo"]`; strings.TrimSpace(out) != want {
			t.Errorf("image config %q, want %q", strings.TrimSpace(out), want)
		}
	})
	t.Run("files", func(t *testing.T) { checkImageFiles(t, tag) })
	t.Run("default command runs the demo", func(t *testing.T) {
		// The default command is the full demo (about a minute): seeing it
		// start is enough here; the next subtest runs a short one through.
		name := fmt.Sprintf("sluice-image-test-demo-%d", os.Getpid())
		cmd := exec.Command("podman", append(run("--name", name), tag)...)
		exited := waitForLine(t, cmd, "replaying plain round robin")
		exec.Command("podman", "rm", "-f", "-t", "0", name).Run()
		<-exited
	})
	t.Run("short demo", func(t *testing.T) {
		out, err := exec.Command("podman", append(run(), tag, "demo", "--duration", "1s", "--quiet")...).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Before / after")) {
			t.Fatalf("demo: %v\n%s", err, out)
		}
	})
	t.Run("serve", func(t *testing.T) { checkServe(t, run, tag) })
}

// podmanRunner finds the `podman run` flags this machine needs by running
// `sluice version` in the image: first plain; then with rlimits no higher
// than a sandbox allows (podman raises nofile and nproc to the maximum by
// default); then with runc (crun refuses hybrid cgroup hierarchies).
func podmanRunner(t *testing.T, tag string) func(extra ...string) []string {
	t.Helper()
	limits := []string{"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}
	var tried []string
	for _, flags := range [][]string{nil, limits, append([]string{"--runtime", "runc"}, limits...)} {
		if slices.Contains(flags, "runc") {
			if _, err := exec.LookPath("runc"); err != nil {
				tried = append(tried, "runc: not installed")
				continue
			}
		}
		args := append(append([]string{"run", "--rm", "--network", "none"}, flags...), tag, "version")
		out, err := exec.Command("podman", args...).CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), "sluice image-test ") {
			return func(extra ...string) []string {
				return append(append([]string{"run", "--rm"}, flags...), extra...)
			}
		}
		if err == nil || !cannotRunContainers(out) {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		tried = append(tried, lastLine(out))
	}
	t.Skipf("podman cannot run containers on this machine: %s", strings.Join(tried, "; "))
	return nil
}

// cannotRunContainers tells a machine that cannot run containers (the
// runtime, namespaces or cgroups refused) from an image that is wrong.
func cannotRunContainers(out []byte) bool {
	s := string(out)
	for _, sign := range []string{"OCI runtime", "OCI permission denied", "user namespace", "newuidmap", "cannot set up namespace", "cgroup"} {
		if strings.Contains(s, sign) {
			return true
		}
	}
	return false
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

func podman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkImageFiles exports the image's file system: the static binary and
// the CA bundle are its only non-empty files; there is no shell.
func checkImageFiles(t *testing.T, tag string) {
	id := strings.TrimSpace(podman(t, "create", tag))
	defer exec.Command("podman", "rm", "-f", id).Run()
	export := exec.Command("podman", "export", id)
	stdout, err := export.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := export.Start(); err != nil {
		t.Fatal(err)
	}
	var files []string
	sawTmp := false
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		switch path.Base(name) {
		case "sh", "bash", "dash", "ash", "busybox":
			t.Errorf("the image has a shell: /%s", name)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			files = append(files, name)
		}
		if name == "usr/local/bin/sluice" {
			checkStatic(t, tr)
		}
		if name == "data" && (h.Uid != 65532 || h.Mode&0o777 != 0o700) {
			t.Errorf("/data is owned by %d mode %o: the image's user cannot keep the queue there", h.Uid, h.Mode)
		}
		if name == "tmp" {
			sawTmp = true
			if h.Mode&0o1777 != 0o1777 {
				t.Errorf("/tmp has mode %o, want 1777 (uploads are spooled there)", h.Mode)
			}
		}
	}
	if err := export.Wait(); err != nil {
		t.Fatal(err)
	}
	if !sawTmp {
		t.Error("the image has no /tmp (os.TempDir(): uploads are spooled there)")
	}
	slices.Sort(files)
	if want := []string{"etc/ssl/certs/ca-certificates.crt", "usr/local/bin/sluice"}; !slices.Equal(files, want) {
		t.Errorf("non-empty files %v, want %v", files, want)
	}
}

// checkStatic: no ELF interpreter, so the binary needs no libc in scratch.
func checkStatic(t *testing.T, r io.Reader) {
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("usr/local/bin/sluice: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("usr/local/bin/sluice is dynamically linked; scratch has no loader (build with CGO_ENABLED=0)")
		}
	}
}

// waitForLine starts cmd and returns once a line of its output (stdout and
// stderr) contains want; it fails if the output ends first. The returned
// channel is closed when cmd has exited.
func waitForLine(t *testing.T, cmd *exec.Cmd, want string) <-chan struct{} {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }()
	var seen []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) {
			go io.Copy(io.Discard, pr) // keep the process's writes from blocking
			return exited
		}
		seen = append(seen, sc.Text())
	}
	t.Fatalf("output ended without %q:\n%s", want, strings.Join(seen, "\n"))
	return nil
}

// checkServe runs `sluice serve` in the container on the host's loopback
// (host network), with a config mounted read-only and the admin token
// from the environment, in front of a simulated backend on loopback.
func checkServe(t *testing.T, run func(...string) []string, tag string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls, stopSim, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", 1, sim.Config{Model: "sim-model"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopSim()
	public, admin := freePort(t), freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin:\n  listen: 127.0.0.1:%d\n  token: ${SLUICE_ADMIN_TOKEN}\n"+
		"models:\n  - name: sim-model\n    backends:\n      - url: %s\n", public, admin, urls[0])
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // the image's user reads it
	name := fmt.Sprintf("sluice-image-test-serve-%d", os.Getpid())
	args := run("--name", name, "--network", "host", "-e", "SLUICE_ADMIN_TOKEN=image-test-token",
		"-v", dir+":/etc/sluice:ro")
	cmd := exec.Command("podman", append(args, tag, "serve", "--config", "/etc/sluice/sluice.yaml")...)
	var logs bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	defer exec.Command("podman", "rm", "-f", "-t", "0", name).Run()
	ready, scanned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "sluice gateway listening") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		<-scanned
		t.Fatalf("serve exited before listening: %v\n%s", err, logs.String())
	}

	base := fmt.Sprintf("http://127.0.0.1:%d", public)
	expect(t, "GET", base+"/healthz", "", "", 200, "ok")
	expect(t, "GET", base+"/readyz", "", "", 200, `true`)
	expect(t, "POST", base+"/v1/chat/completions", "",
		`{"model":"sim-model","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, 200, `"chat.completion"`)
	// A Files API upload is spooled to os.TempDir() (/tmp) first.
	var upload bytes.Buffer
	mw := multipart.NewWriter(&upload)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "in.jsonl")
	io.WriteString(fw, `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"sim-model","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}}`+"\n")
	mw.Close()
	req, _ := http.NewRequest("POST", base+"/v1/files", &upload)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"file"`) {
			t.Errorf("POST /v1/files: %d %s", resp.StatusCode, body)
		}
	}
	adminURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	expect(t, "GET", adminURL, "", "", 401, "invalid_admin_token")
	expect(t, "GET", adminURL, "image-test-token", "", 200, "sluice_")

	// SIGTERM (podman stop): the gateway drains and exits 0.
	podman(t, "stop", "-t", "30", name)
	err = <-exited
	<-scanned
	if err != nil || !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("serve after SIGTERM: %v\n%s", err, logs.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func expect(t *testing.T, method, url, token, body string, status int, contains string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || !strings.Contains(string(got), contains) {
		t.Errorf("%s %s: %d %s, want %d with %q", method, url, resp.StatusCode, got, status, contains)
	}
}

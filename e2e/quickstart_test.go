package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// quickstartFence opens the README block TestReadmeQuickstart runs.
const quickstartFence = "```sh quickstart"

// TestReadmeQuickstart runs the README's quickstart block as written, with
// bash -e, in an empty directory laid out like a checkout after `make deps
// build filters`: bin/wasmxds (built from this tree), the example filters,
// docs/quickstart. The block starts its own registry, upstream, wasmxds and
// Envoy; the test checks what the README says the commands print and ends
// every process the block started. Before the block's last line (which
// stops everything) it adds one check: `wasmxds status`, again for up to
// 30 s, until the plugin runs. Right after the first response the plugin
// may still be pending, as the README says, while Envoy confirms its first
// module.
//
// Where unprivileged network namespaces work (unshare -rn), the block runs
// in one of its own, so its fixed ports cannot meet `make run` or anything
// else on the machine; otherwise it runs on the host's loopback and the test
// first checks that the ports it uses are free.
func TestReadmeQuickstart(t *testing.T) {
	requireFull(t)
	t.Parallel()
	script := readmeQuickstart(t)
	const stopAll = "kill $(jobs -p)"
	i := strings.LastIndex(script, "\n"+stopAll)
	if i < 0 {
		t.Fatalf("the README's quickstart no longer ends with %q; update this test with it", stopAll)
	}
	script = script[:i+1] + "for i in $(seq 30); do wasmxds status | grep -Eq '^httpbin-1 +add-header +running ' && break; sleep 1; done\n" +
		"wasmxds status\n" + script[i+1:]
	readme, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// What the README promises the commands print; the test holds it to that.
	expect := []string{
		"x-wasm: hello",
		"specs: 1 listener, 1 cluster, 1 plugin, 0 errors, 0 warnings",
	}
	for _, e := range expect {
		if !strings.Contains(string(readme), e) {
			t.Fatalf("README.md no longer says %q; update this test with it", e)
		}
	}

	dir := t.TempDir()
	layOutCheckout(t, dir)
	if err := os.WriteFile(filepath.Join(dir, ".quickstart.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	run := []string{"bash", "-e", "-o", "pipefail", ".quickstart.sh"}
	if ownNetworkNamespace() {
		run = []string{"unshare", "--net", "--map-root-user", "sh", "-c",
			`ip link set lo up && exec bash -e -o pipefail .quickstart.sh`}
	} else {
		for _, port := range quickstartPorts(script) {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Fatalf("the quickstart needs 127.0.0.1:%d, which is in use (is `make run` running?): %v", port, err)
			}
			l.Close()
		}
	}
	t.Logf("running %s", strings.Join(run, " "))

	outPath := filepath.Join(dir, ".quickstart.out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(run[0], run[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Dir(tools.envoy)+string(os.PathListSeparator)+filepath.Dir(tools.registry)+
			string(os.PathListSeparator)+os.Getenv("PATH"),
		"XDG_CACHE_HOME="+filepath.Join(dir, ".xdg-cache"), // serve's default --cache-dir
	)
	// Its own process group: the block's background jobs stay in it, so
	// the cleanup can end every one of them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { killGroup(t, pgid) })
	defer func() {
		if t.Failed() {
			t.Logf("---- quickstart output:\n%s", testproc.Tail(outPath, 60))
			for _, log := range []string{"wasmxds.log", "envoy.log", "registry.log"} {
				t.Logf("---- %s, last lines:\n%s", log, testproc.Tail(filepath.Join(dir, log), 30))
			}
		}
	}()

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the quickstart failed: %v", err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatal("the quickstart has not finished after 5 minutes")
	}

	got, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range expect {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(e) + `\r?$`).Match(got) {
			t.Errorf("the quickstart's output has no line %q", e)
		}
	}
	// wasmxds status, as the README's comment on it says.
	if !regexp.MustCompile(`(?m)^httpbin-1\s+(\S+\s+)?app=httpbin\s`).Match(got) {
		t.Errorf("wasmxds status does not list node httpbin-1")
	}
	if !regexp.MustCompile(`(?m)^httpbin-1\s+add-header\s+running\s`).Match(got) {
		t.Errorf("wasmxds status does not show add-header running on httpbin-1")
	}
}

// readmeQuickstart returns the README's quickstart block.
func readmeQuickstart(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	in, found := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == quickstartFence:
			if found {
				t.Fatalf("README.md has two %q blocks", quickstartFence)
			}
			in, found = true, true
		case in && strings.HasPrefix(line, "```"):
			in = false
		case in:
			b.WriteString(line + "\n")
		}
	}
	if !found || in {
		t.Fatalf("README.md has no complete %q block", quickstartFence)
	}
	return b.String()
}

// layOutCheckout puts into dir what the quickstart reads from a checkout.
func layOutCheckout(t *testing.T, dir string) {
	t.Helper()
	link := func(src, dst string) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	link(tools.wasmxds, filepath.Join(dir, "bin", "wasmxds"))
	for _, f := range filterNames {
		link(filterPath(f), filepath.Join(dir, "examples", "filters", "bin", f+".wasm"))
	}
	link(filepath.Join(repoRoot(), "docs", "quickstart"), filepath.Join(dir, "docs", "quickstart"))
}

// ownNetworkNamespace reports whether the block can run in a network
// namespace of its own.
func ownNetworkNamespace() bool {
	return exec.Command("unshare", "--net", "--map-root-user", "sh", "-c", "ip link set lo up").Run() == nil
}

// quickstartPorts are the ports the block uses: those it names, and the
// defaults it relies on (serve's admin listener, Envoy's admin).
func quickstartPorts(script string) []int {
	ports := []int{18081, 9901}
	for _, m := range regexp.MustCompile(`\b(\d{4,5})\b`).FindAllString(script, -1) {
		if p, err := strconv.Atoi(m); err == nil && p < 65536 {
			ports = append(ports, p)
		}
	}
	return ports
}

// killGroup ends every process of a process group and waits until none is
// left.
func killGroup(t *testing.T, pgid int) {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killing process group %d: %v", pgid, err)
		return
	}
	err := testproc.Poll(30*time.Second, 50*time.Millisecond, func() error {
		if pids := liveInGroup(pgid); len(pids) > 0 {
			return fmt.Errorf("process group %d still has processes %v", pgid, pids)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// liveInGroup lists the processes of a group that have not exited. Exited
// ones (zombies) are left out: the block's jobs outlive their shell, so
// whoever adopted them reaps them, not this process.
func liveInGroup(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		f := strings.Fields(rest)
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process never handed out before.
func freePort(t testing.TB) int {
	t.Helper()
	p, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually calls fn until it returns nil or timeout passes; on timeout the
// test fails with fn's last error.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	if err := poll(timeout, fn); err != nil {
		t.Fatal(err)
	}
}

// poll is eventually without a test: it returns the last error on timeout,
// or at once when a process it checks with Alive has exited.
func poll(timeout time.Duration, fn func() error) error {
	return testproc.Poll(timeout, 100*time.Millisecond, fn)
}

// run executes a short command and returns its combined output.
func run(env []string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// commandIn prepares argv to run in dir.
func commandIn(dir string, argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	return cmd
}

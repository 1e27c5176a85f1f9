package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a child process whose output goes to a log file, so a failing test
// can show what each process said.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}

	mu      sync.Mutex
	waitErr error
}

// startProc starts argv with its stdout and stderr appended to logPath.
func startProc(name, logPath string, env []string, argv ...string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	fmt.Fprintf(logFile, "=== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	// Children die with the test binary even if it is killed mid-run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// alive returns an error when the process has already exited; polls use it
// to fail fast instead of waiting out their deadline.
func (p *proc) alive() error {
	if gone, err := p.exited(); gone {
		return fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, err, p.logPath, tail(p.logPath, 30))
	}
	return nil
}

// stop asks the process to end and kills it if it does not within 10 s.
func (p *proc) stop() {
	if gone, _ := p.exited(); gone {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() {
	if gone, _ := p.exited(); gone {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		// Envoy's start-up inventory of extensions says nothing about a failure.
		if !bytes.Contains(l, []byte("[source/server/server.cc:4")) && !bytes.Contains(l, []byte("[source/server/server.cc:5")) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// dumpOnFailure prints the end of each log after a failed test.
func dumpOnFailure(t testing.TB, name, logPath string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s log (%s), last lines:\n%s", name, logPath, tail(logPath, 60))
		}
	})
}

// startT starts a process that lives as long as the test, with its log
// dumped if the test fails.
func startT(t testing.TB, name string, env []string, argv ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	p, err := startProc(name, logPath, env, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	dumpOnFailure(t, name, logPath)
	return p
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Ports handed out by this process are never handed out twice, so
// parallel tests do not collide with each other.
func freePort(t testing.TB) int {
	t.Helper()
	p, err := nextFreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

func nextFreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("free port: no unused port after 100 tries")
}

// eventually calls fn until it returns nil or timeout passes; on timeout the
// test fails with fn's last error.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	if err := poll(timeout, fn); err != nil {
		t.Fatal(err)
	}
}

// poll is eventually without a test: it returns the last error on timeout.
func poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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

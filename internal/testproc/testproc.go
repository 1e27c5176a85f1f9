// Package testproc runs the child processes of end-to-end tests and
// benchmarks (wasmxds, Envoy, a registry): output to a log file shown when
// a test fails, waits that give up as soon as the process dies, and a stop
// that asks with SIGTERM, kills if it must, and always reaps.
package testproc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it kills.
var StopGrace = 10 * time.Second

// tailLines is how much of the log an exit error quotes.
const tailLines = 30

// Proc is a child process whose stdout and stderr go to a log file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process was reaped

	mu      sync.Mutex
	waitErr error
}

// Start starts argv with env added to this process's environment and its
// output appended to logPath, after a line naming the command. The child
// is killed if this process dies first; a goroutine reaps it, and Stop,
// Kill or Done wait for that.
func Start(name, logPath string, env []string, argv ...string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: no command", name)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	fmt.Fprintf(logFile, "=== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
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

// StartT starts a process that lives as long as the test: its log is in
// the test's temp directory and shown if the test fails, and it is
// stopped when the test ends.
func StartT(t testing.TB, name string, env []string, argv ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), strings.ReplaceAll(name, " ", "-")+".log")
	p, err := Start(name, logPath, env, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	DumpOnFailure(t, name, logPath)
	return p
}

// DumpOnFailure shows the end of a log in the test's output if the test
// fails.
func DumpOnFailure(t testing.TB, name, logPath string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s log (%s), last lines:\n%s", name, logPath, Tail(logPath, 60))
		}
	})
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// ExitedError says a process is gone, with the end of its log.
type ExitedError struct {
	Name, LogPath string
	Err           error // how it exited
	Tail          string
}

// Error names the process, how it exited and the end of its log.
func (e *ExitedError) Error() string {
	return fmt.Sprintf("%s exited (%v); log %s:\n%s", e.Name, e.Err, e.LogPath, e.Tail)
}

// Alive returns an *ExitedError once the process has exited. Poll gives up
// at once on one, instead of waiting out its deadline.
func (p *Proc) Alive() error {
	if gone, err := p.Exited(); gone {
		return &ExitedError{Name: p.Name, LogPath: p.LogPath, Err: err, Tail: Tail(p.LogPath, tailLines)}
	}
	return nil
}

// Stop sends SIGTERM, kills the process if it has not exited within
// StopGrace, and waits until it is reaped.
func (p *Proc) Stop() {
	if gone, _ := p.Exited(); gone {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill ends the process at once, as a crash would, and waits until it is
// reaped.
func (p *Proc) Kill() {
	if gone, _ := p.Exited(); gone {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Tail returns the last n lines of a file, for failure messages. Envoy's
// start-up inventory of extensions is left out: it says nothing about a
// failure and would crowd out what does.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if !bytes.Contains(l, []byte("[source/server/server.cc:4")) && !bytes.Contains(l, []byte("[source/server/server.cc:5")) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

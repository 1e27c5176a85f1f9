package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process whose output goes to a log file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// StartProc starts argv with stdout and stderr appended to logPath. The
// child is killed if this process dies first.
func StartProc(name, logPath string, argv ...string) (*Proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Alive returns an error, with the end of the log, once the process exited.
func (p *Proc) Alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); log %s:\n%s", p.Name, p.waitErr, p.LogPath, Tail(p.LogPath, 20))
	default:
		return nil
	}
}

// Stop sends SIGTERM and kills the process if it has not exited in 10 s.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// RSS returns a process's resident set size in bytes, from
// /proc/<pid>/status VmRSS.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS in /proc/%d/status", pid)
}

// RaiseFileLimit lifts the soft open-file limit to the hard one: every
// simulated Envoy holds a socket, and children inherit the limit.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return lim.Cur, nil
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Poll calls f until it returns nil or timeout passes, then returns f's
// last error.
func Poll(timeout, every time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}

// WaitHTTP polls url until it answers 200, failing early if p exits.
func WaitHTTP(p *Proc, url string, timeout time.Duration) error {
	return Poll(timeout, 20*time.Millisecond, func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}

// RepoRoot is the module root: this package lives in <root>/bench.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Binaries are the programs a benchmark runs as separate processes.
type Binaries struct {
	Wasmxds string
	Floor   string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build compiles wasmxds and the floor server into dir, once per process.
func Build(dir string) (Binaries, error) {
	buildOnce.Do(func() {
		built = Binaries{Wasmxds: filepath.Join(dir, "wasmxds"), Floor: filepath.Join(dir, "xdsfloor")}
		for out, pkg := range map[string]string{built.Wasmxds: "./cmd/wasmxds", built.Floor: "./bench/cmd/xdsfloor"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = RepoRoot()
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = errors.Join(buildErr, fmt.Errorf("go build %s: %w\n%s", pkg, err, b))
			}
		}
	})
	return built, buildErr
}

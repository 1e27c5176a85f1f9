package bench

import (
	"bufio"
	"errors"
	"fmt"
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

// CPUTime returns the user plus system CPU time a process has used, from
// /proc/<pid>/stat (utime and stime, in clock ticks of 100 Hz, the value
// Linux reports to user space on every architecture Go supports here).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("cpu time: unexpected /proc/%d/stat", pid)
	}
	// rest starts at field 3 (state): utime and stime are fields 14, 15.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
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

var (
	serveHelpMu sync.Mutex
	serveHelp   = map[string]string{} // binary → its `serve --help`
)

// serveKnows reports whether bin's serve command has the flag (e.g.
// "--pprof"), from its --help, read once per binary.
func serveKnows(bin, flag string) bool {
	serveHelpMu.Lock()
	defer serveHelpMu.Unlock()
	help, ok := serveHelp[bin]
	if !ok {
		out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
		help = string(out)
		serveHelp[bin] = help
	}
	return strings.Contains(help, flag+" ")
}

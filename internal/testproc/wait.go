package testproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Poll calls fn every `every` until it returns nil or timeout passes, then
// returns fn's last error; an *ExitedError (from Proc.Alive) ends it at
// once. A process offers no event for "now listening", so waits on one
// poll, with generous timeouts.
func Poll(timeout, every time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if exited := (*ExitedError)(nil); errors.As(err, &exited) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(every)
	}
}

// pollEvery is how often the Proc waits check.
const pollEvery = 20 * time.Millisecond

// WaitFor polls check until it returns nil, giving up with the process's
// exit (and the end of its log) as soon as it dies, or after timeout.
func (p *Proc) WaitFor(timeout time.Duration, check func() error) error {
	return Poll(timeout, pollEvery, func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		return check()
	})
}

// WaitHTTP waits until GET url answers with one of codes (200 if none).
func (p *Proc) WaitHTTP(url string, timeout time.Duration, codes ...int) error {
	if len(codes) == 0 {
		codes = []int{http.StatusOK}
	}
	return p.WaitFor(timeout, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if !slices.Contains(codes, resp.StatusCode) {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}

// WaitPort waits until addr (host:port) accepts TCP connections.
func (p *Proc) WaitPort(addr string, timeout time.Duration) error {
	return p.WaitFor(timeout, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// WaitLog waits until the process's log contains line.
func (p *Proc) WaitLog(line string, timeout time.Duration) error {
	return p.WaitFor(timeout, func() error {
		b, err := os.ReadFile(p.LogPath)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(line)) {
			return fmt.Errorf("%s: log has no %q yet", p.Name, line)
		}
		return nil
	})
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// It never returns the same port twice in one process, so that parallel
// tests do not collide with each other.
func FreePort() (int, error) {
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

// FreeAddr is FreePort as a 127.0.0.1:port address.
func FreeAddr() (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// Metric reads one sample of a Prometheus text endpoint (e.g. the admin
// listener's /metrics): sample is the metric name with its labels as the
// endpoint writes them, such as `wasmxds_xds_connected_nodes` or
// `wasmxds_rollout_state{plugin="p",state="halted"}`.
func Metric(url, sample string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", url, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			got, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("%s in %s: %w", sample, url, err)
			}
			return got, nil
		}
	}
	return 0, fmt.Errorf("no %s in %s", sample, url)
}

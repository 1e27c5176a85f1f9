package filters_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startupTimeout bounds how long Envoy may take to compile the modules and
// open its listeners on a busy machine.
const startupTimeout = 90 * time.Second

// envoyBinary finds Envoy: $ENVOY_BIN, then PATH, then the copy the
// repository's dependency installer puts under .tools.
func envoyBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("envoy"); err == nil {
		return bin
	}
	bin, _ := filepath.Abs("../../.tools/envoy-venv/bin/envoy")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Envoy: set ENVOY_BIN, put envoy on PATH, or run `make deps` (%v)", err)
	}
	return bin
}

// echoUpstream answers every request with 200, a body naming the path, and
// each request header copied to a response header x-echo-<name> (values
// joined with ","), so tests can see what reached the upstream.
func echoUpstream(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name, values := range r.Header {
			w.Header().Set("x-echo-"+strings.ToLower(name), strings.Join(values, ","))
		}
		fmt.Fprintf(w, "upstream %s\n", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// envoy is a running Envoy process.
type envoy struct {
	admin     string            // admin base URL
	listeners map[string]string // listener name -> base URL
	logPath   string
	stop      func() // kills Envoy and waits for it; safe to call twice
}

// startEnvoy runs Envoy on bootstrap with one worker (so per-VM state is
// per process) and waits until it is ready. Envoy's log (stderr) goes to a
// file under the test's temp dir.
func startEnvoy(t testing.TB, bootstrap string) *envoy {
	t.Helper()
	dir := t.TempDir()
	e := &envoy{logPath: filepath.Join(dir, "envoy.log")}
	cfg := filepath.Join(dir, "bootstrap.yaml")
	addrFile := filepath.Join(dir, "admin-address")
	if err := os.WriteFile(cfg, []byte(bootstrap), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(envoyBinary(t), "-c", cfg, "--concurrency", "1",
		"--disable-hot-restart", "--admin-address-path", addrFile, "-l", "info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Envoy: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	e.stop = sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("Envoy log:\n%s", e.log())
		}
	})
	e.waitReady(t, addrFile, exited)
	return e
}

// waitReady polls until the admin address is written, the server reports
// LIVE and every listener has its port.
func (e *envoy) waitReady(t testing.TB, addrFile string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(startupTimeout)
	for {
		select {
		case err := <-exited:
			t.Fatalf("Envoy exited during startup: %v\n%s", err, e.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Envoy not ready after %v\n%s", startupTimeout, e.log())
		}
		if e.admin == "" {
			if b, err := os.ReadFile(addrFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				e.admin = "http://" + strings.TrimSpace(string(b))
			}
		}
		if e.admin != "" && e.ready() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports whether Envoy is live and records its listener addresses.
func (e *envoy) ready() bool {
	if body, code := httpGet(e.admin + "/ready"); code != http.StatusOK || !strings.Contains(body, "LIVE") {
		return false
	}
	body, code := httpGet(e.admin + "/listeners?format=json")
	if code != http.StatusOK {
		return false
	}
	var resp struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if json.Unmarshal([]byte(body), &resp) != nil || len(resp.ListenerStatuses) == 0 {
		return false
	}
	e.listeners = map[string]string{}
	for _, l := range resp.ListenerStatuses {
		sa := l.LocalAddress.SocketAddress
		if sa.PortValue == 0 {
			return false
		}
		e.listeners[l.Name] = fmt.Sprintf("http://%s:%d", sa.Address, sa.PortValue)
	}
	return true
}

func (e *envoy) log() string {
	b, _ := os.ReadFile(e.logPath)
	return string(b)
}

// waitLog polls Envoy's log until it contains want.
func (e *envoy) waitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(e.log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("Envoy log has no %q after %v", want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(url string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// result is what a client saw through Envoy.
type result struct {
	status int
	header http.Header
	body   string
}

// do sends GET url with extra request headers and returns the response.
func do(t testing.TB, url string, headers map[string]string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

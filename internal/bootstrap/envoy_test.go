package bootstrap

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envoyStartTimeout bounds how long a started Envoy may take to write its
// admin address; generous, since the machine is shared.
const envoyStartTimeout = 30 * time.Second

// bootstrappedEnvoy is an Envoy running from a generated bootstrap.
type bootstrappedEnvoy struct {
	admin   string // admin base URL
	logPath string
}

// startBootstrapEnvoy runs Envoy on the bootstrap until the test ends. The
// bootstrap should put the admin on port 0; the chosen port is read from
// --admin-address-path.
func startBootstrapEnvoy(t *testing.T, bootstrap string) *bootstrappedEnvoy {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "envoy.yaml")
	addrFile := filepath.Join(dir, "admin-address")
	e := &bootstrappedEnvoy{logPath: filepath.Join(dir, "envoy.log")}
	if err := os.WriteFile(cfg, []byte(bootstrap), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(envoyPath(t), "-c", cfg, "--concurrency", "1", "--disable-hot-restart",
		"--admin-address-path", addrFile, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Envoy: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("Envoy log:\n%s\n--- bootstrap:\n%s", e.log(), bootstrap)
		}
	})
	e.admin = "http://" + waitAdminAddress(t, addrFile, exited, e)
	return e
}

// waitAdminAddress polls for the file Envoy writes once its admin listens;
// Envoy offers no other signal.
func waitAdminAddress(t *testing.T, path string, exited <-chan error, e *bootstrappedEnvoy) string {
	t.Helper()
	deadline := time.Now().Add(envoyStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("Envoy exited during startup: %v\n%s", err, e.log())
		default:
		}
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("Envoy's admin did not start within %v\n%s", envoyStartTimeout, e.log())
	return ""
}

func (e *bootstrappedEnvoy) log() string {
	b, _ := os.ReadFile(e.logPath)
	return string(b)
}

func (e *bootstrappedEnvoy) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get(e.admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, body)
	}
	return body
}

// envoyNode is the node Envoy reports in /server_info, with label values
// kept raw so that a non-string shows as such.
type envoyNode struct {
	ID       string `json:"id"`
	Cluster  string `json:"cluster"`
	Metadata struct {
		Labels map[string]json.RawMessage `json:"labels"`
	} `json:"metadata"`
}

func (e *bootstrappedEnvoy) node(t *testing.T) envoyNode {
	t.Helper()
	var info struct {
		Node envoyNode `json:"node"`
	}
	if err := json.Unmarshal(e.get(t, "/server_info"), &info); err != nil {
		t.Fatalf("/server_info: %v", err)
	}
	return info.Node
}

// counter reads one of Envoy's counters; 0 when it does not exist yet.
func (e *bootstrappedEnvoy) counter(t *testing.T, name string) uint64 {
	t.Helper()
	body := e.get(t, "/stats?usedonly&filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	for line := range strings.Lines(string(body)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok && k == name {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("stat %s = %q", name, v)
			}
			return n
		}
	}
	return 0
}

// waitCounter waits until a counter reaches at least min.
func (e *bootstrappedEnvoy) waitCounter(t *testing.T, name string, min uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for e.counter(t, name) < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %d within %v\n%s", name, min, within, e.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newSecret is a value that appears nowhere unless leaked.
func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "wxs-secret-" + hex.EncodeToString(b)
}

// replaceFile writes path atomically, as a secret rotation does.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsReachOnlySelectedEnvoysAndNoOutput: a pluginConfig value
// filled from a file reaches the Envoy the plugin selects (config-echo
// shows it) and follows rotations; a missing file is a spec error at
// file:line and the last good config stays; the values appear in no log
// (at debug level), status, status page, metrics, cache file, nor in the config of an
// Envoy the plugin does not select.
func TestSecretsReachOnlySelectedEnvoysAndNoOutput(t *testing.T) {
	requireFull(t)
	t.Parallel()
	secretDir := t.TempDir()
	token := filepath.Join(secretDir, "api-token")
	first, second := newSecret(t), newSecret(t)
	replaceFile(t, token, first+"\n")
	spec := doc("WasmPlugin", "echo-secret", map[string]any{
		"selector":     map[string]any{"matchLabels": map[string]any{"app": "secrets"}},
		"url":          oci(refConfigEcho),
		"pluginConfig": map[string]any{"header": "x-api-key"},
		"secretRefs":   []any{map[string]any{"path": "auth.token", "file": token}},
	})
	// The entry's line: the one after "secretRefs:".
	entryLine := 1 + strings.Count(spec[:strings.Index(spec, "secretRefs:")], "\n") + 1
	f := newSingle(t, serverOptions{args: []string{"--log-level", "debug"}}, "secrets", map[string]string{pluginFile: spec})
	bystander := startEnvoy(t, f.srv, "bystander-node", map[string]string{"app": "elsewhere"})

	f.waitFor(t, expectHeader(f.port, configEchoHeader, `{"auth":{"token":"`+first+`"},"header":"x-api-key"}`))

	replaceFile(t, token, second)
	f.waitFor(t, expectHeader(f.port, configEchoHeader, `{"auth":{"token":"`+second+`"},"header":"x-api-key"}`))

	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	eventually(t, applyTimeout, func() error {
		st, err := debugStatus(f.srv)
		if err != nil {
			return err
		}
		want := fmt.Sprintf("%s:%d: spec.secretRefs[0].file: cannot read %s", pluginFile, entryLine, token)
		for _, e := range st.SpecErrors {
			if strings.HasPrefix(e, want) {
				return nil
			}
		}
		return fmt.Errorf("specErrors %q lack %q", st.SpecErrors, want)
	})
	holds(t, "after the secret file went missing",
		expectHeader(f.port, configEchoHeader, `{"auth":{"token":"`+second+`"},"header":"x-api-key"}`))

	waitAcked(t, f.srv, "bystander-node")
	dump, err := bystander.admin("/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump, "secrets-upstream") && !strings.Contains(dump, "wasmxds_modules") {
		t.Fatalf("the bystander's config dump does not look like a wasmxds config:\n%.2000s", dump)
	}
	outputs := map[string]string{"bystander's /config_dump": dump}
	for _, path := range []string{"/debug/status", "/metrics", "/"} { // "/": the status page
		outputs[path] = httpGet(t, f.srv.url(path))
	}
	if !strings.Contains(outputs["/"], "echo-secret") {
		t.Fatalf("the status page does not show the plugin; the test must read the page:\n%.1000s", outputs["/"])
	}
	st, err := f.srv.statusText()
	if err != nil {
		t.Fatal(err)
	}
	outputs["wasmxds status"] = st
	outputs["the log"] = readFile(t, f.srv.logPath)
	if !strings.Contains(outputs["the log"], "level=DEBUG") && !strings.Contains(outputs["the log"], `"level":"DEBUG"`) {
		t.Fatalf("the log has no debug lines; the test must read a debug log")
	}
	files := 0
	err = filepath.WalkDir(f.srv.cacheDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		outputs[path] = readFile(t, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.json", "plugins.json"} {
		if _, ok := outputs[filepath.Join(f.srv.cacheDir, name)]; !ok {
			t.Errorf("the cache has no %s to check (files: %d)", name, files)
		}
	}
	for where, text := range outputs {
		for _, secret := range []string{first, second} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds a secret value", where)
			}
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

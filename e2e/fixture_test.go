package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Deadlines for polls. Generous: the machine may be shared and busy, and a
// poll returns as soon as the behaviour shows.
const (
	applyTimeout  = 45 * time.Second // a spec edit reaching Envoy
	steadyReplies = 5                // consecutive replies that must agree
)

// single is the common fixture: one wasmxds, one upstream and one Envoy
// (labelled app=<app>) with a listener on port routing to the upstream.
type single struct {
	srv   *server
	envoy *envoy
	port  int
	app   string
}

// baseSpecFile holds the listener and cluster of a single fixture; tests
// put plugins in other files so they can edit them on their own.
const baseSpecFile = "base.yaml"

// newSingle starts a single fixture. specs are written before wasmxds starts,
// so they are the initial state.
func newSingle(t *testing.T, opts serverOptions, app string, specs map[string]string) *single {
	t.Helper()
	f := &single{port: freePort(t), app: app}
	up := startUpstream(t)
	f.srv = startServerWith(t, opts, func(s *server) {
		s.writeSpec(baseSpecFile, docs(listenerSpec(app, app, f.port, app+"-upstream"), clusterSpec(app+"-upstream", up)))
		for name, content := range specs {
			s.writeSpec(name, content)
		}
	})
	f.envoy = startEnvoy(t, f.srv, app+"-node", map[string]string{"app": app})
	return f
}

// waitFor polls until check holds for several consecutive requests.
func (f *single) waitFor(t *testing.T, check func() error) {
	t.Helper()
	eventually(t, applyTimeout, func() error {
		if err := f.srv.proc.alive(); err != nil {
			return err
		}
		return steady(steadyReplies, check)()
	})
}

// holds asserts that check keeps holding now, for several requests.
func holds(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := steady(steadyReplies, check)(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// moduleSHA256 is the hex sha256 of an example filter's module.
func moduleSHA256(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filterPath(name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// debugStatus returns /debug/status as generic JSON plus its raw text, so
// assertions can name what a user reading it would look for.
func debugStatus(s *server) (any, string, error) {
	var raw json.RawMessage
	if err := s.get("/debug/status", &raw); err != nil {
		return nil, "", err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, "", err
	}
	return v, string(raw), nil
}

// objectsWith returns every JSON object in v that has key == value.
func objectsWith(v any, key, value string) []map[string]any {
	var out []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x[key].(string); ok && s == value {
				out = append(out, x)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}

// pluginStatusContains polls /debug/status until the entry of plugin name
// mentions every one of words (case-insensitive).
func pluginStatusContains(s *server, name string, words ...string) func() error {
	return func() error {
		v, raw, err := debugStatus(s)
		if err != nil {
			return err
		}
		for _, obj := range objectsWith(v, "name", name) {
			b, _ := json.Marshal(obj)
			if containsAll(strings.ToLower(string(b)), words) {
				return nil
			}
		}
		return fmt.Errorf("no status entry for %q mentions %q; /debug/status: %s", name, words, raw)
	}
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, strings.ToLower(w)) {
			return false
		}
	}
	return true
}

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
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
	f := newSingleServer(t, opts, app, specs)
	f.envoy = startEnvoy(t, f.srv, app+"-node", map[string]string{"app": app})
	return f
}

// newSingleServer is newSingle without its Envoy, for a test that starts
// the Envoy its own way (f.envoy is nil).
func newSingleServer(t *testing.T, opts serverOptions, app string, specs map[string]string) *single {
	t.Helper()
	f := &single{port: freePort(t), app: app}
	up := startUpstream(t)
	f.srv = startServerWith(t, opts, func(s *server) {
		s.writeSpec(baseSpecFile, docs(listenerSpec(app, app, f.port, app+"-upstream"), clusterSpec(app+"-upstream", up)))
		for name, content := range specs {
			s.writeSpec(name, content)
		}
	})
	return f
}

// waitFor polls until check holds for several consecutive requests.
func (f *single) waitFor(t *testing.T, check func() error) {
	t.Helper()
	eventually(t, applyTimeout, func() error {
		if err := f.srv.proc.Alive(); err != nil {
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

// status is the part of /debug/status the scenarios read, as a user or a
// script would.
type status struct {
	Ready      bool     `json:"ready"`
	SpecErrors []string `json:"specErrors"`
	Plugins    []struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
		Error  string `json:"error"`
	} `json:"plugins"`
	Nodes []nodeStatus `json:"nodes"`
}

type nodeStatus struct {
	ID      string       `json:"id"`
	Streams int          `json:"streams"`
	Plugins []nodePlugin `json:"plugins"`
	Types   map[string]struct {
		Sent  string `json:"sent"`
		Acked string `json:"acked"`
	} `json:"types"`
	LastNack *struct {
		Error string `json:"error"`
	} `json:"lastNack"`
}

// debugStatus fetches and decodes /debug/status.
func debugStatus(s *server) (status, error) {
	var st status
	err := s.get("/debug/status", &st)
	return st, err
}

// pluginError polls until /debug/status reports an error for plugin name
// that mentions every one of words (case-insensitive); it returns the
// module sha256 the plugin is still served with.
func pluginError(s *server, name string, served *string, words ...string) func() error {
	return func() error {
		st, err := debugStatus(s)
		if err != nil {
			return err
		}
		for _, p := range st.Plugins {
			if p.Name != name {
				continue
			}
			if p.Error == "" || !containsAll(strings.ToLower(p.Error), words) {
				return fmt.Errorf("plugin %s: error %q, want one mentioning %q", name, p.Error, words)
			}
			*served = p.SHA256
			return nil
		}
		return fmt.Errorf("plugin %s not in /debug/status: %+v", name, st.Plugins)
	}
}

// ackedVersions returns the versions node has ACKed on a live stream, by
// type, once every type sent has been ACKed.
func ackedVersions(s *server, nodeID string) (map[string]string, error) {
	st, err := debugStatus(s)
	if err != nil {
		return nil, err
	}
	for _, n := range st.Nodes {
		if n.ID != nodeID {
			continue
		}
		if n.Streams == 0 || len(n.Types) == 0 {
			return nil, fmt.Errorf("node %s: %d streams, %d types", nodeID, n.Streams, len(n.Types))
		}
		acked := map[string]string{}
		for typ, v := range n.Types {
			if v.Acked == "" || v.Acked != v.Sent {
				return nil, fmt.Errorf("node %s: %s sent %q, acked %q", nodeID, typ, v.Sent, v.Acked)
			}
			acked[typ] = v.Acked
		}
		return acked, nil
	}
	return nil, fmt.Errorf("node %s not connected (nodes: %+v)", nodeID, st.Nodes)
}

// waitAcked polls until node has ACKed everything sent, and returns the
// versions.
func waitAcked(t *testing.T, s *server, nodeID string) map[string]string {
	t.Helper()
	var acked map[string]string
	eventually(t, applyTimeout, func() error {
		var err error
		acked, err = ackedVersions(s, nodeID)
		return err
	})
	return acked
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, strings.ToLower(w)) {
			return false
		}
	}
	return true
}

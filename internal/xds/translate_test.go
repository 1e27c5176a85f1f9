package xds

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/out")

// goldenInput is one translation case: the IR, the modules, the module
// server and delivery mode, and the labels of the node to translate for.
type goldenInput struct {
	Labels          map[string]string       `yaml:"labels"`
	ModuleServerURL string                  `yaml:"moduleServerURL"`
	Delivery        Delivery                `yaml:"delivery"`
	Modules         map[string]goldenModule `yaml:"modules"`
	// NoState translates a nil State.
	NoState   bool               `yaml:"noState"`
	Listeners []catalog.Listener `yaml:"listeners"`
	Clusters  []catalog.Cluster  `yaml:"clusters"`
	Plugins   []goldenPlugin     `yaml:"plugins"`
}

type goldenModule struct {
	SHA256 string `yaml:"sha256"`
	URL    string `yaml:"url"`
	Err    string `yaml:"err"`
}

// goldenPlugin spells phases by name; the rest maps to catalog.Plugin.
type goldenPlugin struct {
	Name         string            `yaml:"name"`
	Source       catalog.Source    `yaml:"source"`
	Selector     map[string]string `yaml:"selector"`
	Config       string            `yaml:"config"`
	RootID       string            `yaml:"rootID"`
	Phase        string            `yaml:"phase"`
	Priority     int32             `yaml:"priority"`
	FailStrategy string            `yaml:"failStrategy"`
	Env          []catalog.EnvVar  `yaml:"env"`
	Ports        []uint32          `yaml:"ports"`
	Type         string            `yaml:"type"`
	Targets      []catalog.Target  `yaml:"targets"`
	VMID         string            `yaml:"vmID"`
	Lua          string            `yaml:"lua"`
}

var goldenPhases = map[string]catalog.Phase{
	"AUTHN": catalog.PhaseAuthn, "AUTHZ": catalog.PhaseAuthz, "STATS": catalog.PhaseStats, "": catalog.PhaseUnspecified,
}

func loadGolden(t *testing.T, path string) (Input, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g goldenInput
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	in := Input{ModuleServerURL: g.ModuleServerURL, Delivery: g.Delivery, Modules: map[string]PluginModule{}}
	for name, m := range g.Modules {
		pm := PluginModule{Err: m.Err}
		if m.SHA256 != "" || m.URL != "" {
			pm.Module = &Module{SHA256: m.SHA256, URL: m.URL}
		}
		in.Modules[name] = pm
	}
	if g.NoState {
		return in, g.Labels
	}
	in.State = &catalog.State{Listeners: g.Listeners, Clusters: g.Clusters}
	for _, p := range g.Plugins {
		phase, ok := goldenPhases[p.Phase]
		if !ok {
			t.Fatalf("%s: plugin %s: unknown phase %q", path, p.Name, p.Phase)
		}
		in.State.Plugins = append(in.State.Plugins, catalog.Plugin{
			Name: p.Name, Source: p.Source, Selector: p.Selector, Config: p.Config, RootID: p.RootID,
			Phase: phase, Priority: p.Priority, FailStrategy: catalog.FailStrategy(p.FailStrategy),
			Env: p.Env, Ports: p.Ports, Type: catalog.PluginType(p.Type), Targets: p.Targets,
			VMID: p.VMID, Lua: p.Lua,
		})
	}
	return in, g.Labels
}

// TestGolden translates every testdata/in case and compares the result with
// testdata/out; `go test ./xds -run Golden -update` rewrites the outputs.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			in, labels := loadGolden(t, path)
			res, problems := Translate(in, labels)
			checkShippable(t, res)
			outputs := map[string]string{
				"listeners":  renderResources(t, res.Listeners),
				"routes":     renderResources(t, res.Routes),
				"clusters":   renderResources(t, res.Clusters),
				"extensions": renderResources(t, res.Extensions),
				"secrets":    renderResources(t, res.Secrets),
				"problems":   renderYAML(t, problems),
			}
			for kind, got := range outputs {
				compareGolden(t, filepath.Join("testdata", "out", name+"."+kind+".yaml"), got)
			}
		})
	}
}

// compareGolden compares got with the golden file; an empty output means the
// file must not exist.
func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if got == "" {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		want, err = nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s differs (rerun with -update if intended)\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// renderResources renders resources as YAML through protojson, so Any
// fields show their typed content. Empty slices render as "".
func renderResources[T proto.Message](t *testing.T, msgs []T) string {
	t.Helper()
	if len(msgs) == 0 {
		return ""
	}
	docs := make([]any, 0, len(msgs))
	for _, m := range msgs {
		js, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, v)
	}
	return renderYAML(t, docs)
}

func renderYAML[T any](t *testing.T, v []T) string {
	t.Helper()
	if len(v) == 0 {
		return ""
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkShippable asserts what the snapshot needs from every translation:
// valid resources, sorted by name, with every reference resolvable.
func checkShippable(t *testing.T, res *Resources) {
	t.Helper()
	for _, err := range shippableErrors(res) {
		t.Error(err)
	}
}

func shippableErrors(res *Resources) []error {
	var errs []error
	names := func(kind string, ms []proto.Message) map[string]bool {
		seen := map[string]bool{}
		prev := ""
		for _, m := range ms {
			n := m.(namedResource).GetName()
			if n <= prev && prev != "" {
				errs = append(errs, fmt.Errorf("%s not sorted by name: %q after %q", kind, n, prev))
			}
			prev = n
			seen[n] = true
			if err := m.(ValidatingMessage).ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s invalid: %w", kind, n, err))
			}
		}
		return seen
	}
	routes := names("route", toMessages(res.Routes))
	clusters := names("cluster", toMessages(res.Clusters))
	exts := names("extension", toMessages(res.Extensions))
	secrets := names("secret", toMessages(res.Secrets))
	names("listener", toMessages(res.Listeners))
	for _, ref := range references(res) {
		known := map[string]map[string]bool{"route": routes, "cluster": clusters, "extension": exts, "secret": secrets}[ref.kind]
		if !known[ref.name] {
			errs = append(errs, fmt.Errorf("%s refers to missing %s %q", ref.from, ref.kind, ref.name))
		}
	}
	return errs
}

func toMessages[T proto.Message](s []T) []proto.Message {
	out := make([]proto.Message, len(s))
	for i, m := range s {
		out[i] = m
	}
	return out
}

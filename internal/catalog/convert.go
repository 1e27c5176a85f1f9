package catalog

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Conversion is a spec file rewritten with its plugins of other kinds as
// wasmxds.dev/v1alpha1 WasmPlugins.
type Conversion struct {
	// YAML holds every document: each FilterDeployment,
	// ASMFilterDeployment, EnvoyFilter and Wasm TrafficExtension as the
	// WasmPlugin that serves the same Envoy configuration, preceded by its
	// refusals and warnings as comments; every other document as it was.
	YAML []byte
	// Refused counts the problems reported as comments: the fields that
	// could not be converted because wasmxds cannot honour them.
	Refused int
}

// Convert rewrites the spec file at path (see Conversion). Relative module
// paths become absolute, so the output applies from any directory.
func Convert(path string) (Conversion, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Conversion{}, fmt.Errorf("convert: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Conversion{}, fmt.Errorf("convert %s: %w", path, err)
	}
	roots, err := decodeAll(data)
	if err != nil {
		line, msg := syntaxLine(err)
		return Conversion{}, fmt.Errorf("%s:%d: invalid YAML: %s", path, line, msg)
	}
	var c Conversion
	var out bytes.Buffer
	for _, root := range roots {
		if isNull(root) {
			continue
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		p := &problems{file: path}
		doc := decodeDocument(p, root, filepath.Dir(abs))
		c.Refused += len(p.errs)
		writeComments(&out, p)
		if err := writeConverted(&out, doc, root); err != nil {
			return Conversion{}, fmt.Errorf("convert %s: %w", path, err)
		}
	}
	c.YAML = out.Bytes()
	return c, nil
}

func writeComments(out *bytes.Buffer, p *problems) {
	byLine := func(a, b SpecError) int { return cmp.Compare(a.Line, b.Line) }
	slices.SortStableFunc(p.errs, byLine)
	slices.SortStableFunc(p.warns, byLine)
	for _, e := range p.errs {
		fmt.Fprintf(out, "# refused: %s\n", oneLineComment(e.Error()))
	}
	for _, w := range p.warns {
		fmt.Fprintf(out, "# warning: %s\n", oneLineComment(w.Error()))
	}
}

func oneLineComment(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// writeConverted writes doc as a WasmPlugin when it is a plugin of another
// kind with a module, and root as it was otherwise.
func writeConverted(out *bytes.Buffer, doc *document, root *yaml.Node) error {
	if doc == nil || doc.plugin == nil || doc.kind == KindWasmPlugin || !doc.plugin.HasModule() {
		if doc != nil && doc.plugin != nil && !doc.plugin.HasModule() {
			out.WriteString("# kept as it is: a Lua TrafficExtension has no WasmPlugin form\n")
		}
		return encodeYAML(out, root)
	}
	fmt.Fprintf(out, "# converted from %s %s at %s\n", doc.kind, doc.key.name, doc.source)
	return encodeYAML(out, wasmPluginFor(*doc.plugin, metadataNamespace(root)))
}

func encodeYAML(out *bytes.Buffer, v any) error {
	enc := yaml.NewEncoder(out)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding YAML: %w", err)
	}
	return enc.Close()
}

// metadataNamespace reads metadata.namespace of a document, if any.
func metadataNamespace(root *yaml.Node) string {
	md := mappingValue(resolve(root), "metadata")
	if ns := mappingValue(md, "namespace"); ns != nil && ns.Kind == yaml.ScalarNode {
		return ns.Value
	}
	return ""
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// The WasmPlugin document convert writes.
type (
	wasmPluginOut struct {
		APIVersion string        `yaml:"apiVersion"`
		Kind       string        `yaml:"kind"`
		Metadata   metadataOut   `yaml:"metadata"`
		Spec       pluginSpecOut `yaml:"spec"`
	}
	metadataOut struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace,omitempty"`
	}
	pluginSpecOut struct {
		Selector        *selectorOut `yaml:"selector,omitempty"`
		URL             string       `yaml:"url"`
		SHA256          string       `yaml:"sha256,omitempty"`
		ImagePullPolicy string       `yaml:"imagePullPolicy,omitempty"`
		ImagePullSecret string       `yaml:"imagePullSecret,omitempty"`
		VerificationKey string       `yaml:"verificationKey,omitempty"`
		PluginName      string       `yaml:"pluginName,omitempty"`
		PluginConfig    *yaml.Node   `yaml:"pluginConfig,omitempty"`
		Phase           string       `yaml:"phase,omitempty"`
		Priority        int32        `yaml:"priority,omitempty"`
		FailStrategy    string       `yaml:"failStrategy,omitempty"`
		VMConfig        *vmConfigOut `yaml:"vmConfig,omitempty"`
		Match           []matchOut   `yaml:"match,omitempty"`
		Type            string       `yaml:"type,omitempty"`
	}
	selectorOut struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	vmConfigOut struct {
		VMID string   `yaml:"vmId,omitempty"`
		Env  []envOut `yaml:"env,omitempty"`
	}
	envOut struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value,omitempty"`
		ValueFrom string `yaml:"valueFrom,omitempty"`
	}
	matchOut struct {
		Ports []portOut `yaml:"ports"`
	}
	portOut struct {
		Number uint32 `yaml:"number"`
	}
)

// wasmPluginFor spells pl as a wasmxds.dev/v1alpha1 WasmPlugin.
func wasmPluginFor(pl Plugin, namespace string) wasmPluginOut {
	s := pluginSpecOut{URL: pl.URL, SHA256: pl.SHA256, ImagePullPolicy: string(pl.PullPolicy),
		ImagePullSecret: pl.PullSecret, VerificationKey: pl.VerificationKey, PluginName: pl.RootID,
		Priority: pl.Priority, FailStrategy: string(pl.FailStrategy)}
	if len(pl.Selector) > 0 {
		s.Selector = &selectorOut{MatchLabels: pl.Selector}
	}
	if pl.Phase != PhaseUnspecified {
		s.Phase = pl.Phase.String()
	}
	if pl.Type == PluginNetwork {
		s.Type = string(PluginNetwork)
	}
	s.PluginConfig = pluginConfigNode(pl.Config)
	if pl.VMID != "" || len(pl.Env) > 0 {
		s.VMConfig = &vmConfigOut{VMID: pl.VMID}
		for _, e := range pl.Env {
			eo := envOut{Name: e.Name, Value: e.Value}
			if e.FromHost {
				eo = envOut{Name: e.Name, ValueFrom: "HOST"}
			}
			s.VMConfig.Env = append(s.VMConfig.Env, eo)
		}
	}
	if len(pl.Ports) > 0 {
		m := matchOut{}
		for _, port := range pl.Ports {
			m.Ports = append(m.Ports, portOut{Number: port})
		}
		s.Match = []matchOut{m}
	}
	return wasmPluginOut{APIVersion: APIVersion, Kind: KindWasmPlugin,
		Metadata: metadataOut{Name: pl.Name, Namespace: namespace}, Spec: s}
}

// pluginConfigNode spells a configuration so that a WasmPlugin delivers the
// same bytes: a mapping when cfg is a JSON object in the catalog's own
// encoding (compact, keys sorted), the string as it is otherwise.
func pluginConfigNode(cfg string) *yaml.Node {
	if cfg == "" {
		return nil
	}
	var doc yaml.Node
	if strings.HasPrefix(cfg, "{") && yaml.Unmarshal([]byte(cfg), &doc) == nil && len(doc.Content) == 1 &&
		doc.Content[0].Kind == yaml.MappingNode {
		if again, err := encodePluginConfig(doc.Content[0]); err == nil && again == cfg {
			return doc.Content[0]
		}
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: cfg}
	if strings.Contains(cfg, "\n") {
		n.Style = yaml.LiteralStyle
	}
	return n
}

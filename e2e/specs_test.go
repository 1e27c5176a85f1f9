package e2e

import (
	"strings"

	"gopkg.in/yaml.v3"
)

const apiVersion = "wasmxds.dev/v1alpha1"

// doc renders one spec document.
func doc(kind, name string, spec map[string]any) string {
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	})
	if err != nil {
		panic(err) // only plain maps are marshalled
	}
	return string(b)
}

// docs joins documents into one multi-document file.
func docs(d ...string) string { return strings.Join(d, "---\n") }

// listenerSpec routes everything on port to cluster, for nodes labelled app.
func listenerSpec(name, app string, port int, cluster string) string {
	return doc("Listener", name, map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
		"port":     port,
		"routes":   []any{map[string]any{"match": map[string]any{"prefix": "/"}, "cluster": cluster}},
	})
}

// clusterSpec is a cluster with one host:port endpoint.
func clusterSpec(name, endpoint string) string {
	return doc("Cluster", name, map[string]any{"endpoints": []any{endpoint}})
}

// plugin describes a WasmPlugin document; zero fields are left out.
type plugin struct {
	name         string
	app          string // matchLabels app=<app>; empty selects every node
	url          string
	sha256       string
	config       map[string]any
	phase        string
	priority     int
	failStrategy string
	pullPolicy   string
	ports        []int
	rollout      map[string]any   // spec.rollout: {url, percent}
	env          []map[string]any // spec.vmConfig.env: {name, value} or {name, valueFrom}
}

func (p plugin) spec() string {
	s := map[string]any{"url": p.url}
	if p.app != "" {
		s["selector"] = map[string]any{"matchLabels": map[string]any{"app": p.app}}
	}
	set := func(k string, v any, ok bool) {
		if ok {
			s[k] = v
		}
	}
	set("sha256", p.sha256, p.sha256 != "")
	set("pluginConfig", p.config, p.config != nil)
	set("phase", p.phase, p.phase != "")
	set("priority", p.priority, p.priority != 0)
	set("failStrategy", p.failStrategy, p.failStrategy != "")
	set("imagePullPolicy", p.pullPolicy, p.pullPolicy != "")
	set("rollout", p.rollout, p.rollout != nil)
	set("vmConfig", map[string]any{"env": p.env}, len(p.env) > 0)
	if len(p.ports) > 0 {
		var ports []any
		for _, n := range p.ports {
			ports = append(ports, map[string]any{"number": n})
		}
		s["match"] = []any{map[string]any{"ports": ports}}
	}
	return doc("WasmPlugin", p.name, s)
}

// oci is the oci:// URL of a module in the shared registry.
func oci(repoTag string) string { return "oci://" + shared.registry.ref(repoTag) }

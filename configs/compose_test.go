// Package configs_test checks the shipped spec directories and the
// docker-compose mesh against each other without a container engine: the
// compose file is loaded with compose-go, bootstraps as YAML and specs with
// the catalog package.
package configs_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// mesh is the loaded compose project and the specs it serves.
type mesh struct {
	project *types.Project
	state   *catalog.State
	// replicas are the wasmxds services, by name.
	replicas []types.ServiceConfig
	// serve are the flags of the replicas' serve command, which is the same
	// for all of them.
	serve serveFlags
}

// The wasmxds replicas and the one name sidecars reach them by.
var (
	replicaNames = []string{"wasmxds-1", "wasmxds-2"}
	xdsAlias     = "wasmxds"
)

// serveFlags are the flags of the wasmxds service's serve command.
type serveFlags map[string][]string

func loadMesh(t *testing.T) *mesh {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yaml"},
		cli.WithWorkingDirectory(".."), cli.WithName("wasmxds-mesh"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yaml does not load: %v", err)
	}
	state, err := catalog.Load("mesh")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range state.Errors {
		t.Errorf("configs/mesh: %v", e)
	}
	m := &mesh{project: project, state: state}
	for _, name := range replicaNames {
		m.replicas = append(m.replicas, m.service(t, name))
	}
	m.serve = parseServe(t, m.replicas[0].Command)
	return m
}

func (m *mesh) service(t *testing.T, name string) types.ServiceConfig {
	t.Helper()
	s, ok := m.project.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yaml has no service %q", name)
	}
	return s
}

// parseServe reads `serve --flag value ...` into a map.
func parseServe(t *testing.T, cmd []string) serveFlags {
	t.Helper()
	if len(cmd) == 0 || cmd[0] != "serve" {
		t.Fatalf("wasmxds command = %q, want serve ...", cmd)
	}
	flags := serveFlags{}
	for i := 1; i < len(cmd); i++ {
		name, value, hasValue := strings.Cut(cmd[i], "=")
		if !strings.HasPrefix(name, "--") {
			t.Fatalf("wasmxds command: unexpected argument %q", cmd[i])
		}
		if !hasValue {
			if i+1 >= len(cmd) {
				t.Fatalf("wasmxds command: %s has no value", name)
			}
			i++
			value = cmd[i]
		}
		flags[strings.TrimPrefix(name, "--")] = append(flags[strings.TrimPrefix(name, "--")], value)
	}
	return flags
}

func (f serveFlags) one(t *testing.T, name string) string {
	t.Helper()
	if len(f[name]) != 1 {
		t.Fatalf("wasmxds serve --%s given %d times, want once", name, len(f[name]))
	}
	return f[name][0]
}

// port returns the port of a host:port flag such as ":18000".
func (f serveFlags) port(t *testing.T, name string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(f.one(t, name))
	if err != nil {
		t.Fatalf("--%s: %v", name, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatalf("--%s: %v", name, err)
	}
	return uint32(n)
}

// mountFor returns the volume mounted at target, or at a parent of it.
func mountFor(s types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if target == v.Target || strings.HasPrefix(target, strings.TrimSuffix(v.Target, "/")+"/") {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

func TestComposeBindMountsExist(t *testing.T) {
	m := loadMesh(t)
	for name, s := range m.project.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
	}
}

func TestComposeServeFlagsPointAtMounts(t *testing.T) {
	m := loadMesh(t)
	for _, wx := range m.replicas {
		t.Run(wx.Name, func(t *testing.T) { checkServeMounts(t, m, wx) })
	}
	reg := m.service(t, "registry")
	want := "registry:" + strconv.Itoa(int(reg.Ports[0].Target))
	if got := m.serve.one(t, "insecure-registry"); got != want {
		t.Errorf("--insecure-registry %s, want %s", got, want)
	}
}

// checkServeMounts: a replica's --config-dir is the mesh specs and its
// --cache-dir a named volume; it publishes its listen ports.
func checkServeMounts(t *testing.T, m *mesh, wx types.ServiceConfig) {
	cfg, ok := mountFor(wx, m.serve.one(t, "config-dir"))
	if !ok || cfg.Type != types.VolumeTypeBind {
		t.Fatalf("--config-dir %s is not a bind mount", m.serve.one(t, "config-dir"))
	}
	if rel, err := filepath.Rel(m.project.WorkingDir, cfg.Source); err != nil || rel != filepath.Join("configs", "mesh") {
		t.Errorf("--config-dir is mounted from %s, want configs/mesh", cfg.Source)
	}
	if cache, ok := mountFor(wx, m.serve.one(t, "cache-dir")); !ok || cache.Type != types.VolumeTypeVolume {
		t.Errorf("--cache-dir %s is not on a named volume, so the cache would not survive a restart",
			m.serve.one(t, "cache-dir"))
	}
	adv, err := url.Parse(m.serve.one(t, "advertise-url"))
	if err != nil {
		t.Fatal(err)
	}
	if adv.Hostname() != xdsAlias || adv.Port() != strconv.Itoa(int(m.serve.port(t, "http-listen"))) {
		t.Errorf("--advertise-url %s: want http://%s:<--http-listen port> so sidecars reach the module server", adv, xdsAlias)
	}
	for _, flag := range []string{"xds-listen", "http-listen"} {
		if !publishes(wx, m.serve.port(t, flag)) {
			t.Errorf("%s does not publish its --%s port %d", wx.Name, flag, m.serve.port(t, flag))
		}
	}
}

// TestComposeReplicasAreEquivalentBehindOneName: both replicas run the same
// command on the same specs, each with its own cache, and answer to one
// network alias that sidecars resolve to both of them.
func TestComposeReplicasAreEquivalentBehindOneName(t *testing.T) {
	m := loadMesh(t)
	if _, ok := m.project.Services[xdsAlias]; ok {
		t.Errorf("a service is named %s, the replicas' shared alias", xdsAlias)
	}
	caches := map[string]string{}
	hostPorts := map[string]string{}
	for _, wx := range m.replicas {
		if !slices.Equal(withoutFlags(wx.Command, "peer", "replica-id"), withoutFlags(m.replicas[0].Command, "peer", "replica-id")) {
			t.Errorf("%s runs %q, %s runs %q; replicas must be equivalent", wx.Name, wx.Command, m.replicas[0].Name, m.replicas[0].Command)
		}
		if wx.Build == nil || m.replicas[0].Build == nil || wx.Build.Target != m.replicas[0].Build.Target {
			t.Errorf("%s is not built like %s", wx.Name, m.replicas[0].Name)
		}
		nw, ok := wx.Networks["default"]
		if !ok || nw == nil || !slices.Contains(nw.Aliases, xdsAlias) {
			t.Errorf("%s has no alias %s on the default network (networks %v)", wx.Name, xdsAlias, wx.Networks)
		}
		cache, _ := mountFor(wx, m.serve.one(t, "cache-dir"))
		if other, dup := caches[cache.Source]; dup {
			t.Errorf("%s and %s share cache volume %s; a cache directory belongs to one process", other, wx.Name, cache.Source)
		}
		caches[cache.Source] = wx.Name
		for _, p := range wx.Ports {
			if other, dup := hostPorts[p.Published]; dup {
				t.Errorf("%s and %s both publish host port %s", other, wx.Name, p.Published)
			}
			hostPorts[p.Published] = wx.Name
		}
	}
	for _, sc := range m.sidecars(t) {
		if sc.bootstrap.adsCluster().Type != "STRICT_DNS" {
			t.Errorf("sidecar %s: ADS cluster type %q, want STRICT_DNS so that Envoy uses every replica the alias resolves to",
				sc.name, sc.bootstrap.adsCluster().Type)
		}
		deps := m.service(t, sc.name).DependsOn
		for _, name := range replicaNames {
			if _, ok := deps[name]; !ok {
				t.Errorf("sidecar %s does not depend on %s", sc.name, name)
			}
		}
		if _, ok := m.service(t, sc.app).Networks["default"]; !ok {
			t.Errorf("app %s (sidecar %s's network) is not on the default network, where the replicas are", sc.app, sc.name)
		}
	}
}

// TestComposeReplicasNameEachOther: each replica names itself and has the
// other as its peer, at the admin port the other listens on beyond
// loopback, so that halts and status are shared (docs/replicas.md).
func TestComposeReplicasNameEachOther(t *testing.T) {
	m := loadMesh(t)
	for i, wx := range m.replicas {
		flags := parseServe(t, wx.Command)
		if got := flags.one(t, "replica-id"); got != wx.Name {
			t.Errorf("%s: --replica-id %s, want its service name", wx.Name, got)
		}
		other := m.replicas[1-i]
		otherFlags := parseServe(t, other.Command)
		want := fmt.Sprintf("%s:%d", other.Name, otherFlags.port(t, "admin-listen"))
		if !slices.Equal(flags["peer"], []string{want}) {
			t.Errorf("%s: --peer %q, want %q", wx.Name, flags["peer"], want)
		}
		if host, _, _ := net.SplitHostPort(otherFlags.one(t, "admin-listen")); host == "127.0.0.1" || host == "localhost" {
			t.Errorf("%s: --admin-listen %s is loopback: %s cannot reach it", other.Name, otherFlags.one(t, "admin-listen"), wx.Name)
		}
	}
}

// withoutFlags is a serve command without the given flags and their values.
func withoutFlags(cmd []string, names ...string) []string {
	var out []string
	for i := 0; i < len(cmd); i++ {
		name, _, hasValue := strings.Cut(cmd[i], "=")
		if slices.Contains(names, strings.TrimPrefix(name, "--")) {
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, cmd[i])
	}
	return out
}

// publishes reports whether a service publishes a container port.
func publishes(s types.ServiceConfig, port uint32) bool {
	return slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool {
		return p.Target == port && p.Published != ""
	})
}

// listens reports whether a service declares a container port, published
// or only exposed to the compose network.
func listens(s types.ServiceConfig, port uint32) bool {
	return publishes(s, port) || slices.Contains(s.Expose, strconv.Itoa(int(port)))
}

// sidecar is an Envoy service sharing an app's network namespace.
type sidecar struct {
	name, app string
	bootstrap bootstrap
}

// bootstrap is the part of an Envoy bootstrap the mesh depends on.
type bootstrap struct {
	Node struct {
		ID       string `yaml:"id"`
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
	} `yaml:"node"`
	DynamicResources struct {
		ADSConfig struct {
			GRPCServices []struct {
				EnvoyGRPC struct {
					ClusterName string `yaml:"cluster_name"`
				} `yaml:"envoy_grpc"`
			} `yaml:"grpc_services"`
		} `yaml:"ads_config"`
	} `yaml:"dynamic_resources"`
	StaticResources struct {
		Clusters []bootstrapCluster `yaml:"clusters"`
	} `yaml:"static_resources"`
}

type bootstrapCluster struct {
	Name           string `yaml:"name"`
	Type           string `yaml:"type"`
	LoadAssignment struct {
		Endpoints []struct {
			LBEndpoints []struct {
				Endpoint struct {
					Address struct {
						SocketAddress struct {
							Address   string `yaml:"address"`
							PortValue uint32 `yaml:"port_value"`
						} `yaml:"socket_address"`
					} `yaml:"address"`
				} `yaml:"endpoint"`
			} `yaml:"lb_endpoints"`
		} `yaml:"endpoints"`
	} `yaml:"load_assignment"`
}

func readBootstrap(path string) (bootstrap, error) {
	var b bootstrap
	data, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	if err := yaml.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// adsCluster returns the static cluster the bootstrap's ADS config names,
// or a zero cluster.
func (b bootstrap) adsCluster() bootstrapCluster {
	if len(b.DynamicResources.ADSConfig.GRPCServices) != 1 {
		return bootstrapCluster{}
	}
	name := b.DynamicResources.ADSConfig.GRPCServices[0].EnvoyGRPC.ClusterName
	for _, c := range b.StaticResources.Clusters {
		if c.Name == name {
			return c
		}
	}
	return bootstrapCluster{}
}

// adsAddress returns host:port of the bootstrap's ADS cluster.
func (b bootstrap) adsAddress() (string, error) {
	if len(b.DynamicResources.ADSConfig.GRPCServices) != 1 {
		return "", fmt.Errorf("want one ADS gRPC service, have %d", len(b.DynamicResources.ADSConfig.GRPCServices))
	}
	c := b.adsCluster()
	for _, e := range c.LoadAssignment.Endpoints {
		for _, lb := range e.LBEndpoints {
			sa := lb.Endpoint.Address.SocketAddress
			return net.JoinHostPort(sa.Address, strconv.Itoa(int(sa.PortValue))), nil
		}
	}
	return "", fmt.Errorf("no static cluster %q with an endpoint", b.DynamicResources.ADSConfig.GRPCServices[0].EnvoyGRPC.ClusterName)
}

// sidecars finds the Envoy services and loads their mounted bootstraps.
func (m *mesh) sidecars(t *testing.T) []sidecar {
	t.Helper()
	var out []sidecar
	for name, s := range m.project.Services {
		if !strings.HasPrefix(s.Image, "envoyproxy/envoy:") {
			continue
		}
		app, ok := strings.CutPrefix(s.NetworkMode, "service:")
		if !ok {
			t.Errorf("sidecar %s: network_mode %q, want service:<app>", name, s.NetworkMode)
			continue
		}
		i := slices.Index(s.Command, "-c")
		if i < 0 || i+1 >= len(s.Command) {
			t.Errorf("sidecar %s: command %q has no -c <bootstrap>", name, s.Command)
			continue
		}
		v, ok := mountFor(s, s.Command[i+1])
		if !ok {
			t.Errorf("sidecar %s: bootstrap %s is not mounted", name, s.Command[i+1])
			continue
		}
		b, err := readBootstrap(v.Source)
		if err != nil {
			t.Errorf("sidecar %s: %v", name, err)
			continue
		}
		out = append(out, sidecar{name: name, app: app, bootstrap: b})
	}
	if len(out) < 2 {
		t.Fatalf("found %d Envoy sidecars, want at least 2", len(out))
	}
	return out
}

func TestComposeSidecarsMatchSpecs(t *testing.T) {
	m := loadMesh(t)
	xds := net.JoinHostPort(xdsAlias, strconv.Itoa(int(m.serve.port(t, "xds-listen"))))
	for _, sc := range m.sidecars(t) {
		ads, err := sc.bootstrap.adsAddress()
		if err != nil {
			t.Errorf("sidecar %s: %v", sc.name, err)
		} else if ads != xds {
			t.Errorf("sidecar %s: ADS at %s, want %s", sc.name, ads, xds)
		}
		labels := sc.bootstrap.Node.Metadata.Labels
		app := m.service(t, sc.app)
		selected := 0
		for _, l := range m.state.Listeners {
			if !catalog.Matches(l.Selector, labels) {
				continue
			}
			selected++
			if !listens(app, l.Port) {
				t.Errorf("sidecar %s gets listener %s on port %d, which service %s neither publishes nor exposes",
					sc.name, l.Name, l.Port, sc.app)
			}
		}
		if selected == 0 {
			t.Errorf("sidecar %s: labels %v select no listener in configs/mesh", sc.name, labels)
		}
		if !slices.ContainsFunc(app.Ports, func(p types.ServicePortConfig) bool { return p.Published != "" }) {
			t.Errorf("app %s publishes no port, so its sidecar cannot be reached from the host", sc.app)
		}
	}
}

func TestComposeClusterEndpointsNameServices(t *testing.T) {
	m := loadMesh(t)
	if len(m.state.Clusters) == 0 {
		t.Fatal("configs/mesh has no clusters")
	}
	for _, c := range m.state.Clusters {
		for _, e := range c.Endpoints {
			s, ok := m.project.Services[e.Host]
			if !ok {
				t.Errorf("cluster %s: endpoint host %s is not a compose service", c.Name, e.Host)
				continue
			}
			if !listens(s, e.Port) {
				t.Errorf("cluster %s: service %s does not publish or expose port %d", c.Name, e.Host, e.Port)
			}
		}
	}
}

func TestComposePluginsComeFromTheRegistryService(t *testing.T) {
	m := loadMesh(t)
	reg := m.service(t, "registry")
	host := "registry:" + strconv.Itoa(int(reg.Ports[0].Target))
	push := strings.Join(m.service(t, "filters").Command, " ")
	if len(m.state.Plugins) == 0 {
		t.Fatal("configs/mesh has no plugins")
	}
	// The filters service pushes filters/<name>:v1 for each module the
	// image built: every filter examples/filters/FILTERS lists (the
	// Dockerfile's build loop reads it), or those its command names.
	built := filterList(t)
	loops := strings.Contains(push, "*.wasm") && strings.Contains(push, host+"/filters/$f:v1")
	for _, p := range m.state.Plugins {
		rest, ok := strings.CutPrefix(p.URL, "oci://"+host+"/")
		if !ok {
			t.Errorf("plugin %s: url %s is not in the compose registry %s", p.Name, p.URL, host)
			continue
		}
		repo, tag, _ := strings.Cut(rest, ":")
		name, ok := strings.CutPrefix(repo, "filters/")
		pushed := strings.Contains(push, name) || (loops && slices.Contains(built, name))
		if !ok || tag != "v1" || !pushed {
			t.Errorf("plugin %s: %s is not something the filters service pushes (%s)", p.Name, p.URL, push)
		}
	}
	if !strings.Contains(push, host+"/filters/") {
		t.Errorf("the filters service does not push to %s: %s", host, push)
	}
	for _, wx := range m.replicas {
		if dep, ok := wx.DependsOn["filters"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s must start after the filters service completed, or its first pulls find nothing", wx.Name)
		}
	}
}

// TestComposeCommandsUseRealFlags runs the CLI's help to catch a compose
// file that drifted from the flags wasmxds actually has.
func TestComposeCommandsUseRealFlags(t *testing.T) {
	m := loadMesh(t)
	help := func(sub string) string {
		out, err := exec.Command(wasmxdsBin, sub, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("wasmxds %s --help: %v\n%s", sub, err, out)
		}
		return string(out)
	}
	serveHelp := help("serve")
	for name := range m.serve {
		if !strings.Contains(serveHelp, "--"+name+" ") {
			t.Errorf("the wasmxds replicas use --%s, which `wasmxds serve` does not have", name)
		}
	}
	pushHelp := help("push")
	script := strings.Join(m.service(t, "filters").Command, " ")
	at := strings.Index(script, "wasmxds push")
	if at < 0 {
		t.Fatalf("the filters service does not run `wasmxds push`: %s", script)
	}
	for _, field := range strings.Fields(script[at:]) {
		if flag, ok := strings.CutPrefix(field, "--"); ok && !strings.Contains(pushHelp, "--"+flag+" ") {
			t.Errorf("the filters service uses --%s, which `wasmxds push` does not have", flag)
		}
	}
}

// TestDockerfileServesComposeTargets checks the Dockerfile without building
// it: every build target compose names exists, the binary is static and the
// runtime stage does not run as root.
func TestDockerfileServesComposeTargets(t *testing.T) {
	m := loadMesh(t)
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]string{} // stage name → its USER
	var current string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && strings.EqualFold(f[0], "FROM") && strings.EqualFold(f[2], "AS"):
			current = f[3]
			stages[current] = ""
		case len(f) == 2 && strings.EqualFold(f[0], "USER") && current != "":
			stages[current] = f[1]
		}
	}
	for name, s := range m.project.Services {
		if s.Build == nil {
			continue
		}
		if _, ok := stages[s.Build.Target]; !ok {
			t.Errorf("service %s builds target %q, which the Dockerfile does not have (stages %v)", name, s.Build.Target, stages)
		}
	}
	for _, wx := range m.replicas {
		if wx.Build == nil {
			t.Fatalf("%s is not built from the Dockerfile", wx.Name)
		}
		if user := stages[wx.Build.Target]; user == "" || user == "root" || strings.HasPrefix(user, "0") {
			t.Errorf("the %s image runs as %q, want a non-root USER", wx.Name, user)
		}
	}
	if !strings.Contains(string(data), "CGO_ENABLED=0 go build") {
		t.Error("the Dockerfile does not build wasmxds with CGO_ENABLED=0, so the binary may need a libc the runtime image lacks")
	}
}

// filterList is examples/filters/FILTERS: the filters the image builds.
func filterList(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", "filters", "FILTERS"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	return names
}

package helm_test

import (
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	helmvalues "helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// httpbinSpecs is a spec file with a listener and its cluster.
const httpbinSpecs = `apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: httpbin-ingress}
spec:
  selector: {matchLabels: {app: httpbin}}
  port: 10000
  routes:
  - match: {prefix: /}
    cluster: httpbin
---
apiVersion: wasmxds.dev/v1alpha1
kind: Cluster
metadata: {name: httpbin}
spec:
  endpoints: ["httpbin.mesh.svc.cluster.local:8080"]
`

// specsValues gives the chart spec files, one as text and one as a YAML
// object, as a user may write either.
var specsValues = `
specs:
  mesh.yaml: |
    ` + strings.ReplaceAll(strings.TrimSpace(httpbinSpecs), "\n", "\n    ") + `
  plugins.yml:
    apiVersion: extensions.istio.io/v1alpha1
    kind: WasmPlugin
    metadata: {name: add-header}
    spec:
      selector: {matchLabels: {app: httpbin}}
      url: oci://registry.mesh:5000/filters/add-header:v1
      pluginConfig: {header: x-wasm, value: hello}
`

// cases are the value sets every release-wide test renders.
var cases = map[string]string{
	"defaults":           "",
	"specs":              specsValues,
	"tls":                "tls: {enabled: true, secretName: wasmxds-tls}",
	"tls-server-only":    "tls: {enabled: true, secretName: wasmxds-tls, verifyClients: false}",
	"existing-configmap": "existingSpecsConfigMap: team-specs",
	"persistence":        "cache: {persistence: {enabled: true, size: 5Gi, storageClassName: fast}}",
	"servicemonitor":     "metrics: {serviceMonitor: {enabled: true, labels: {release: prometheus}}}",
	"registries":         "insecureRegistries: [registry.mesh:5000, 10.0.0.5:5000]\nregistryCredentials: {existingSecret: regcred}",
	"admin-port":         "admin: {port: 19091}",
}

// pendingFlags are serve flags the chart passes that `wasmxds serve` does not
// have yet. The test fails once one of them exists: then delete it from this
// list.
var pendingFlags = []string{}

// forEachCase renders every value set and runs check on it.
func forEachCase(t *testing.T, check func(t *testing.T, r *rendered)) {
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			check(t, render(t, values(t, cases[name])))
		})
	}
}

func TestChartLints(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			res := lint.Run([]string{chartDir}, values(t, cases[name]))
			for _, err := range res.Errors {
				t.Errorf("helm lint --strict: %v", err)
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

func TestDefaultsRunTwoReplicasSpreadAcrossNodes(t *testing.T) {
	r := render(t, values(t, ""))
	if r.deployment == nil {
		t.Fatal("no Deployment by default")
	}
	if got := r.deployment.Spec.Replicas; got == nil || *got != 2 {
		t.Errorf("replicas = %v, want 2", got)
	}
	pod, _ := r.pod(t)
	anti := pod.Spec.Affinity.PodAntiAffinity
	if anti == nil || len(anti.PreferredDuringSchedulingIgnoredDuringExecution) != 1 || len(anti.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Fatalf("pod anti-affinity %+v, want one preferred term", anti)
	}
	term := anti.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.TopologyKey != "kubernetes.io/hostname" || !selects(term.LabelSelector, pod.Labels) {
		t.Errorf("anti-affinity term %+v does not spread these pods across nodes", term)
	}
	if r.pdb == nil || r.pdb.Spec.MaxUnavailable == nil || *r.pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
		t.Fatalf("PodDisruptionBudget %+v, want maxUnavailable 1", r.pdb)
	}
	if !selects(r.pdb.Spec.Selector, pod.Labels) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if v := volume(t, pod, "cache"); v.EmptyDir == nil {
		t.Errorf("cache volume %+v, want an emptyDir by default", v)
	}
	if len(r.others) != 0 || len(r.services) != 2 {
		t.Errorf("defaults render Services %v and %v; want the xDS/modules Service and the peers' headless one",
			slices.Collect(maps.Keys(r.services)), slices.Collect(maps.Keys(r.others)))
	}
	_, flags := r.container(t)
	if got := flags.one(t, "log-format"); got != "json" {
		t.Errorf("--log-format %s, want json", got)
	}
	if got := flags.one(t, "admin-listen"); got != "0.0.0.0:18081" {
		t.Errorf("--admin-listen %s, want 0.0.0.0:18081 so that probes reach it", got)
	}
}

// TestPodsAreHardened: every value set runs non-root as the image's
// distroless user, read-only, without privileges, with resources set.
func TestPodsAreHardened(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		pod, _ := r.pod(t)
		psc := pod.Spec.SecurityContext
		if psc == nil || !isTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser != imageUID(t) ||
			psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("pod securityContext %+v: want runAsNonRoot, runAsUser %d (the Dockerfile's USER), seccomp RuntimeDefault", psc, imageUID(t))
		}
		if psc != nil && (psc.FSGroup == nil || *psc.FSGroup != imageUID(t)) {
			t.Errorf("pod fsGroup %v, want %d so that the cache volume is writable", psc.FSGroup, imageUID(t))
		}
		if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
			t.Error("pods mount a service account token; wasmxds never calls the Kubernetes API")
		}
		c, _ := r.container(t)
		sc := c.SecurityContext
		if sc == nil || !isTrue(sc.RunAsNonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container securityContext %+v: want non-root, read-only root, no privilege escalation, all capabilities dropped", sc)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
				t.Errorf("no %s request", res)
			}
		}
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(resource.MustParse("64Mi")) < 0 {
			t.Errorf("memory limit %v, want one", c.Resources.Limits)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath != "/var/cache/wasmxds" && m.MountPath != "/tmp" && !m.ReadOnly {
				t.Errorf("volume %s is mounted writable at %s; only the cache and /tmp need to be", m.Name, m.MountPath)
			}
		}
	})
}

// TestPortsProbesAndServicesAgree: the listen flags, container ports,
// probes, Service ports and the advertised module URL name the same ports.
func TestPortsProbesAndServicesAgree(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		pod, selector := r.pod(t)
		c, flags := r.container(t)
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for name, flag := range map[string]string{"xds": "xds-listen", "http": "http-listen", "admin": "admin-listen"} {
			if strconv.Itoa(int(ports[name])) != flags.port(t, flag) {
				t.Errorf("container port %s = %d, but --%s is %s", name, ports[name], flag, flags.one(t, flag))
			}
		}
		for probe, want := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port != intstr.FromString("admin") ||
				(probe.HTTPGet.Scheme != "" && probe.HTTPGet.Scheme != corev1.URISchemeHTTP) {
				t.Errorf("probe %+v, want GET %s on the admin port", probe, want)
			}
		}
		if !selects(selector, pod.Labels) {
			t.Error("the workload's selector does not select its own pods")
		}
		svc := r.service(t, fullname)
		if !selects(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, pod.Labels) {
			t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, pod.Labels)
		}
		want := map[string]string{"xds": "grpc", "http": "http"}
		if flags.one(t, "advertise-url")[:5] == "https" {
			want["http"] = "https"
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort != intstr.FromString(p.Name) || ports[p.Name] == 0 {
				t.Errorf("Service port %s targets %v, not a container port", p.Name, p.TargetPort)
			}
			if p.AppProtocol == nil || *p.AppProtocol != want[p.Name] {
				t.Errorf("Service port %s: appProtocol %v, want %q", p.Name, p.AppProtocol, want[p.Name])
			}
			delete(want, p.Name)
		}
		if len(want) != 0 {
			t.Errorf("Service %s lacks ports %v (it must not carry admin)", svc.Name, want)
		}
		adv, err := url.Parse(flags.one(t, "advertise-url"))
		if err != nil {
			t.Fatal(err)
		}
		if adv.Hostname() != fullname+"."+namespace+".svc.cluster.local" || adv.Port() != strconv.Itoa(int(servicePort(svc, "http"))) {
			t.Errorf("--advertise-url %s is not the Service's module port", adv)
		}
	})
}

// TestPathFlagsPointIntoMounts: every file or directory the serve flags name
// is on a volume, and a file from a Secret is one of the projected keys.
func TestPathFlagsPointIntoMounts(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		pod, _ := r.pod(t)
		c, flags := r.container(t)
		for _, name := range []string{"config-dir", "cache-dir", "tls-cert-file", "tls-key-file", "client-ca-file", "docker-config"} {
			for _, path := range flags[name] {
				m, ok := mountFor(c, path)
				if !ok {
					t.Errorf("--%s %s is on no volume mount", name, path)
					continue
				}
				if name == "cache-dir" {
					continue // an emptyDir or a claim: checked elsewhere
				}
				v := volume(t, pod, m.Name)
				rel := strings.TrimPrefix(strings.TrimPrefix(path, m.MountPath), "/")
				switch {
				case v.Secret != nil:
					if !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == rel }) {
						t.Errorf("--%s %s: Secret %s projects %+v, not %s", name, path, v.Secret.SecretName, v.Secret.Items, rel)
					}
				case v.ConfigMap != nil:
					if rel != "" {
						t.Errorf("--%s %s is inside the ConfigMap mount, want the mount itself", name, path)
					}
				default:
					t.Errorf("--%s %s is on volume %s, neither a Secret nor a ConfigMap", name, path, m.Name)
				}
			}
		}
	})
}

// TestEveryFlagExistsInTheCLI compares the chart's serve flags with the
// CLI's, keeping the pending list honest in both directions.
func TestEveryFlagExistsInTheCLI(t *testing.T) {
	cli := cliFlags(t, "serve")
	used := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		_, flags := render(t, values(t, cases[name])).container(t)
		for f := range flags {
			used[f] = true
		}
	}
	for f := range used {
		if !cli[f] && !slices.Contains(pendingFlags, f) {
			t.Errorf("the chart passes --%s, which `wasmxds serve` does not have", f)
		}
	}
	for _, f := range pendingFlags {
		if cli[f] {
			t.Errorf("`wasmxds serve` now has --%s: remove it from pendingFlags", f)
		}
		if !used[f] {
			t.Errorf("pendingFlags lists --%s, which the chart does not pass", f)
		}
	}
}

// TestArgsParseInTheCLI hands each release's container args to the real
// `wasmxds serve` (with --help, so it stops after parsing): values of the
// wrong type or form fail here. Pending flags are left out until they exist.
func TestArgsParseInTheCLI(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		c, _ := r.container(t)
		args := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			return strings.HasPrefix(a, "--") && slices.Contains(pendingFlags, name)
		})
		out, err := exec.Command(wasmxdsBin, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Errorf("wasmxds %s --help: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
}

func TestTLSMountsTheSecretAndAdvertisesHTTPS(t *testing.T) {
	for name, verify := range map[string]bool{"tls": true, "tls-server-only": false} {
		t.Run(name, func(t *testing.T) {
			r := render(t, values(t, cases[name]))
			pod, _ := r.pod(t)
			_, flags := r.container(t)
			if adv := flags.one(t, "advertise-url"); !strings.HasPrefix(adv, "https://") {
				t.Errorf("--advertise-url %s, want https with TLS on", adv)
			}
			v := volume(t, pod, "tls")
			if v.Secret == nil || v.Secret.SecretName != "wasmxds-tls" {
				t.Fatalf("tls volume %+v, want Secret wasmxds-tls", v)
			}
			keys := []string{"tls.crt", "tls.key"}
			if verify {
				keys = append(keys, "ca.crt")
			}
			var got []string
			for _, item := range v.Secret.Items {
				if item.Key != item.Path {
					t.Errorf("Secret key %s is projected as %s; cert-manager's names should stay", item.Key, item.Path)
				}
				got = append(got, item.Key)
			}
			if !slices.Equal(got, keys) {
				t.Errorf("Secret keys %v, want %v", got, keys)
			}
			if got := len(flags["client-ca-file"]) == 1; got != verify {
				t.Errorf("--client-ca-file given: %v, want %v (tls.verifyClients)", got, verify)
			}
			if !strings.Contains(r.notes, "--tls-ca-file") {
				t.Errorf("NOTES do not tell Envoys to verify the server:\n%s", r.notes)
			}
		})
	}
	if _, err := install(values(t, "tls: {enabled: true}")); err == nil || !strings.Contains(err.Error(), "tls.secretName") {
		t.Errorf("TLS without a Secret name: %v, want an error naming tls.secretName", err)
	}
}

func TestExistingSpecsConfigMap(t *testing.T) {
	r := render(t, values(t, cases["existing-configmap"]))
	pod, _ := r.pod(t)
	if v := volume(t, pod, "specs"); v.ConfigMap == nil || v.ConfigMap.Name != "team-specs" {
		t.Errorf("specs volume %+v, want ConfigMap team-specs", v)
	}
	if len(r.configMaps) != 0 {
		t.Errorf("the chart made ConfigMaps %v next to an existing one", slices.Collect(maps.Keys(r.configMaps)))
	}
	_, err := install(values(t, specsValues+"existingSpecsConfigMap: team-specs\n"))
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("specs and existingSpecsConfigMap together: %v, want an error", err)
	}
}

// TestSpecsConfigMapLoadsInTheCatalog writes the chart-made ConfigMap's
// files into a directory, as the kubelet would, and loads it.
func TestSpecsConfigMapLoadsInTheCatalog(t *testing.T) {
	r := render(t, values(t, specsValues))
	pod, _ := r.pod(t)
	cm, ok := r.configMaps[volume(t, pod, "specs").ConfigMap.Name]
	if !ok {
		t.Fatalf("the specs volume names a ConfigMap the chart did not make (have %v)", slices.Collect(maps.Keys(r.configMaps)))
	}
	if got := slices.Sorted(maps.Keys(cm.Data)); !slices.Equal(got, []string{"mesh.yaml", "plugins.yml"}) {
		t.Errorf("ConfigMap files %v, want mesh.yaml and plugins.yml", got)
	}
	dir := t.TempDir()
	for file, text := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range state.Errors {
		t.Errorf("catalog: %v", e)
	}
	if len(state.Listeners) != 1 || len(state.Clusters) != 1 || len(state.Plugins) != 1 {
		t.Errorf("catalog has %d listeners, %d clusters, %d plugins; want one of each",
			len(state.Listeners), len(state.Clusters), len(state.Plugins))
	}
	if _, err := install(values(t, "specs: {'../x.yaml': 'a: b'}")); err == nil {
		t.Error("a spec file name with a path in it renders; want an error")
	}
}

// TestReadmeInstallFlagsRender parses docs/kubernetes.md's `helm install` value
// flags as the helm CLI does: a spec file given with --set-file lands in the
// specs ConfigMap unchanged, under its escaped dotted name.
func TestReadmeInstallFlagsRender(t *testing.T) {
	file := filepath.Join(t.TempDir(), "httpbin.yaml")
	if err := os.WriteFile(file, []byte(httpbinSpecs), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := helmvalues.Options{
		Values:     []string{"image.repository=REGISTRY/wasmxds", "image.tag=TAG"},
		FileValues: []string{`specs.plugins\.yaml=` + file},
	}
	vals, err := opts.MergeValues(getter.Getters())
	if err != nil {
		t.Fatal(err)
	}
	r := render(t, vals)
	c, _ := r.container(t)
	if c.Image != "REGISTRY/wasmxds:TAG" {
		t.Errorf("image %s, want REGISTRY/wasmxds:TAG", c.Image)
	}
	cm := r.configMaps[fullname+"-specs"]
	if cm == nil || cm.Data["plugins.yaml"] != httpbinSpecs {
		t.Errorf("specs ConfigMap %v, want plugins.yaml with the file's text:\n%s", cm, httpbinSpecs)
	}
}

// TestPersistenceGivesEachReplicaItsOwnCache: a cache directory belongs to
// one process, so a persistent cache means a claim per replica.
func TestPersistenceGivesEachReplicaItsOwnCache(t *testing.T) {
	r := render(t, values(t, cases["persistence"]))
	ss := r.statefulSet
	if ss == nil || r.deployment != nil {
		t.Fatalf("persistence renders StatefulSet %v and Deployment %v, want only a StatefulSet", ss != nil, r.deployment != nil)
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volume claim templates, want 1", len(ss.Spec.VolumeClaimTemplates))
	}
	claim := ss.Spec.VolumeClaimTemplates[0]
	if claim.Name != "cache" || claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != "fast" ||
		!claim.Spec.Resources.Requests.Storage().Equal(resource.MustParse("5Gi")) {
		t.Errorf("claim template %+v, want cache, 5Gi of class fast", claim)
	}
	pod, _ := r.pod(t)
	if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "cache" }) {
		t.Error("the pod has a cache volume that shadows the claim template")
	}
	c, flags := r.container(t)
	if m, ok := mountFor(c, flags.one(t, "cache-dir")); !ok || m.Name != "cache" {
		t.Errorf("--cache-dir %s is not on the claim", flags.one(t, "cache-dir"))
	}
	headless := r.service(t, ss.Spec.ServiceName)
	if headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet service %s has clusterIP %q, want None", headless.Name, headless.Spec.ClusterIP)
	}
	if ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %s, want Parallel: replicas do not depend on each other", ss.Spec.PodManagementPolicy)
	}
}

// TestReplicasFindEachOtherThroughTheHeadlessService: every value set
// passes --peer dns:<headless Service>:<admin port>, and that Service lists
// every pod, ready or not, on the port the admin listener binds beyond
// loopback; with client certificates verified, peers have the certificate
// and CA for mTLS.
func TestReplicasFindEachOtherThroughTheHeadlessService(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		pod, _ := r.pod(t)
		c, flags := r.container(t)
		name, port, ok := strings.Cut(strings.TrimPrefix(flags.one(t, "peer"), "dns:"), ":")
		if !ok || !strings.HasPrefix(flags.one(t, "peer"), "dns:") {
			t.Fatalf("--peer %s, want dns:NAME:PORT", flags.one(t, "peer"))
		}
		svcName, ok := strings.CutSuffix(name, "."+namespace+".svc.cluster.local")
		if !ok {
			t.Fatalf("--peer names %s, not a Service of namespace %s", name, namespace)
		}
		svc := r.service(t, svcName)
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s: clusterIP %q, publishNotReadyAddresses %v; want a headless Service listing every pod",
				svc.Name, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
		}
		if !selects(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, pod.Labels) {
			t.Errorf("Service %s selects %v, not the pods %v", svc.Name, svc.Spec.Selector, pod.Labels)
		}
		if strconv.Itoa(int(servicePort(svc, "admin"))) != port || flags.port(t, "admin-listen") != port {
			t.Errorf("--peer port %s, headless admin port %d, --admin-listen %s: want one port", port,
				servicePort(svc, "admin"), flags.one(t, "admin-listen"))
		}
		if host, _, _ := strings.Cut(flags.one(t, "admin-listen"), ":"); host == "127.0.0.1" || host == "localhost" {
			t.Errorf("--admin-listen %s is loopback: peers cannot reach it", flags.one(t, "admin-listen"))
		}
		if len(flags["client-ca-file"]) == 1 && (len(flags["tls-cert-file"]) != 1 || len(flags["tls-key-file"]) != 1) {
			t.Errorf("client certificates verified without a certificate for peers to present: %v", c.Args)
		}
	})
}

func TestServiceMonitorScrapesTheAdminPort(t *testing.T) {
	r := render(t, values(t, cases["servicemonitor"]))
	sm, ok := r.others["ServiceMonitor"]
	if !ok {
		t.Fatal("no ServiceMonitor")
	}
	if got := str(sm, "metadata", "labels", "release"); got != "prometheus" {
		t.Errorf("ServiceMonitor label release=%q, want the configured prometheus", got)
	}
	endpoints, _ := lookup(sm, "spec", "endpoints").([]any)
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v, want 1", endpoints)
	}
	ep, _ := endpoints[0].(map[string]any)
	if str(ep, "port") != "admin" || str(ep, "path") != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v, want port admin, path /metrics", ep)
	}
	match, _ := lookup(sm, "spec", "selector", "matchLabels").(map[string]any)
	var selected []string
	for _, svc := range r.services {
		if labelsMatch(match, svc.Labels) {
			selected = append(selected, svc.Name)
			if servicePort(svc, "admin") == 0 {
				t.Errorf("Service %s has no admin port to scrape", svc.Name)
			}
		}
	}
	if !slices.Equal(selected, []string{fullname + "-metrics"}) {
		t.Errorf("ServiceMonitor selects Services %v, want only %s-metrics", selected, fullname)
	}
}

func TestInsecureRegistriesAndCredentials(t *testing.T) {
	r := render(t, values(t, cases["registries"]))
	pod, _ := r.pod(t)
	_, flags := r.container(t)
	if got := flags["insecure-registry"]; !slices.Equal(got, []string{"registry.mesh:5000", "10.0.0.5:5000"}) {
		t.Errorf("--insecure-registry %v, want both registries in order", got)
	}
	v := volume(t, pod, "docker-config")
	if v.Secret == nil || v.Secret.SecretName != "regcred" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != corev1.DockerConfigJsonKey {
		t.Errorf("docker-config volume %+v, want the %s key of Secret regcred", v, corev1.DockerConfigJsonKey)
	}
	if got := flags.one(t, "docker-config"); filepath.Base(got) != "config.json" {
		t.Errorf("--docker-config %s, want a config.json file", got)
	}
	_, defaults := render(t, values(t, "")).container(t)
	if len(defaults["insecure-registry"]) != 0 || len(defaults["docker-config"]) != 0 {
		t.Errorf("defaults pass %v; want no insecure registry and no docker config", defaults)
	}
}

// TestNotesBootstrapCommandRuns runs the bootstrap command NOTES.txt gives
// and checks the Envoy bootstrap reaches the Service.
func TestNotesBootstrapCommandRuns(t *testing.T) {
	r := render(t, values(t, ""))
	start := strings.Index(r.notes, "wasmxds bootstrap")
	end := strings.Index(r.notes, "> envoy.yaml")
	if start < 0 || end < start {
		t.Fatalf("NOTES have no `wasmxds bootstrap ... > envoy.yaml` command:\n%s", r.notes)
	}
	cmd := strings.NewReplacer("\\\n", " ", "<unique-id>", "httpbin-1", "<app>", "httpbin").Replace(r.notes[start:end])
	args := strings.Fields(cmd)[1:]
	out, err := exec.Command(wasmxdsBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wasmxds %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	svcHost := fullname + "." + namespace + ".svc.cluster.local"
	for _, want := range []string{"address: " + svcHost, "port_value: 18000", "type: STRICT_DNS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bootstrap from the NOTES' command lacks %q:\n%s", want, out)
		}
	}
}

// service returns the rendered Service called name.
func (r *rendered) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	s, ok := r.services[name]
	if !ok {
		t.Fatalf("no Service %s (have %v)", name, slices.Collect(maps.Keys(r.services)))
	}
	return s
}

func servicePort(s *corev1.Service, name string) int32 {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	return 0
}

func volume(t *testing.T, pod corev1.PodTemplateSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("pod has no volume %s", name)
	return corev1.Volume{}
}

// mountFor returns the mount path is on.
func mountFor(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

// selects reports whether sel's matchLabels all hold in labels.
func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 || len(sel.MatchExpressions) != 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func labelsMatch(match map[string]any, labels map[string]string) bool {
	if len(match) == 0 {
		return false
	}
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func isTrue(b *bool) bool { return b != nil && *b }

// imageUID is the numeric USER of the Dockerfile's wasmxds stage.
func imageUID(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stage, user string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && strings.EqualFold(f[0], "FROM"):
			stage = f[3]
		case len(f) == 2 && strings.EqualFold(f[0], "USER") && stage == "wasmxds":
			user = f[1]
		}
	}
	uid, err := strconv.ParseInt(strings.Split(user, ":")[0], 10, 64)
	if err != nil {
		t.Fatalf("the Dockerfile's wasmxds stage has USER %q, want a numeric uid: %v", user, err)
	}
	return uid
}

// lookup walks nested maps by key.
func lookup(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func str(m map[string]any, keys ...string) string {
	s, _ := lookup(m, keys...).(string)
	return s
}

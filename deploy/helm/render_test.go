// Package helm_test renders the wasmxds Helm chart with Helm's own library,
// decodes every object strictly into the Kubernetes API types and checks the
// result against the wasmxds CLI and catalog built from this tree.
package helm_test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "wasmxds"
	releaseName = "wx"
	namespace   = "mesh"
	// fullname is the objects' name for releaseName.
	fullname = releaseName + "-wasmxds"
)

// wasmxdsBin is the CLI built from this tree by TestMain.
var wasmxdsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmxds-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wasmxdsBin = filepath.Join(dir, "wasmxds")
	build := exec.Command("go", "build", "-o", wasmxdsBin, "../../cmd/wasmxds")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ../../cmd/wasmxds: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rendered is one release of the chart, decoded.
type rendered struct {
	notes       string
	deployment  *appsv1.Deployment
	statefulSet *appsv1.StatefulSet
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdb         *policyv1.PodDisruptionBudget
	account     *corev1.ServiceAccount
	// others holds kinds outside k8s.io/api (the ServiceMonitor), by kind.
	others map[string]map[string]any
}

// values parses a values document as `helm install -f` would.
func values(t *testing.T, doc string) map[string]any {
	t.Helper()
	v, err := common.ReadValues([]byte(doc))
	if err != nil {
		t.Fatalf("values: %v\n%s", err, doc)
	}
	return v.AsMap()
}

// install renders the chart as `helm install --dry-run=client` does.
func install(vals map[string]any) (*release.Release, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = releaseName
	inst.Namespace = namespace
	inst.Replace = true
	rel, err := inst.Run(chrt, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("install returned a %T, want a *release.Release", rel)
	}
	return r, nil
}

// render installs the chart with vals and decodes every object strictly:
// a field the Kubernetes API does not have fails the test.
func render(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	rel, err := install(vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if len(rel.Hooks) != 0 {
		t.Errorf("the chart has %d hooks, want none", len(rel.Hooks))
	}
	r := &rendered{
		notes:      rel.Info.Notes,
		services:   map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{},
		others:     map[string]map[string]any{},
	}
	manifests := releaseutil.SplitManifests(rel.Manifest)
	for _, key := range slices.Sorted(maps.Keys(manifests)) {
		if err := r.decode(manifests[key]); err != nil {
			t.Fatalf("%v\n%s", err, manifests[key])
		}
	}
	return r
}

// decode adds one manifest to r.
func (r *rendered) decode(doc string) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	var obj metav1.Object
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		r.deployment = &appsv1.Deployment{}
		obj = r.deployment
	case "apps/v1 StatefulSet":
		r.statefulSet = &appsv1.StatefulSet{}
		obj = r.statefulSet
	case "v1 Service":
		s := &corev1.Service{}
		obj = s
		defer func() { r.services[s.Name] = s }()
	case "v1 ConfigMap":
		c := &corev1.ConfigMap{}
		obj = c
		defer func() { r.configMaps[c.Name] = c }()
	case "policy/v1 PodDisruptionBudget":
		r.pdb = &policyv1.PodDisruptionBudget{}
		obj = r.pdb
	case "v1 ServiceAccount":
		r.account = &corev1.ServiceAccount{}
		obj = r.account
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var u map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &u); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		r.others[tm.Kind] = u
		return nil
	default:
		return fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if obj.GetNamespace() != namespace {
		return fmt.Errorf("%s %s: namespace %q, want the release's %q", tm.Kind, obj.GetName(), obj.GetNamespace(), namespace)
	}
	return nil
}

// pod returns the pod template of the Deployment or StatefulSet, whichever
// the release has; having both or neither fails the test.
func (r *rendered) pod(t *testing.T) (corev1.PodTemplateSpec, *metav1.LabelSelector) {
	t.Helper()
	switch {
	case r.deployment != nil && r.statefulSet == nil:
		return r.deployment.Spec.Template, r.deployment.Spec.Selector
	case r.statefulSet != nil && r.deployment == nil:
		return r.statefulSet.Spec.Template, r.statefulSet.Spec.Selector
	}
	t.Fatalf("want exactly one of a Deployment (%v) and a StatefulSet (%v)", r.deployment != nil, r.statefulSet != nil)
	return corev1.PodTemplateSpec{}, nil
}

// container returns the wasmxds container and its serve flags.
func (r *rendered) container(t *testing.T) (corev1.Container, serveFlags) {
	t.Helper()
	pod, _ := r.pod(t)
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	return c, parseServe(t, c.Args)
}

// serveFlags are the flags of a `serve` command line, in order of use.
type serveFlags map[string][]string

// parseServe reads `serve --flag=value ...` (or `--flag value`) into a map.
func parseServe(t *testing.T, args []string) serveFlags {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("container args %q, want serve ...", args)
	}
	flags := serveFlags{}
	for i := 1; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		name, ok := strings.CutPrefix(name, "--")
		if !ok {
			t.Fatalf("container args: unexpected argument %q", args[i])
		}
		if !hasValue {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				t.Fatalf("container args: --%s has no value", name)
			}
			i++
			value = args[i]
		}
		flags[name] = append(flags[name], value)
	}
	return flags
}

func (f serveFlags) one(t *testing.T, name string) string {
	t.Helper()
	if len(f[name]) != 1 {
		t.Fatalf("serve --%s given %d times, want once", name, len(f[name]))
	}
	return f[name][0]
}

// port returns the port of a listen flag such as ":18000".
func (f serveFlags) port(t *testing.T, name string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(f.one(t, name))
	if err != nil {
		t.Fatalf("--%s: %v", name, err)
	}
	return port
}

// cliFlags runs `wasmxds <sub> --help` and returns the long flags it lists.
func cliFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	out, err := exec.Command(wasmxdsBin, sub, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("wasmxds %s --help: %v\n%s", sub, err, out)
	}
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 {
		t.Fatalf("found %d flags in `wasmxds %s --help`, the help format changed:\n%s", len(flags), sub, out)
	}
	return flags
}

// helpFlag matches a flag line of cobra's help: "  -h, --help   help for serve".
var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)\b`)

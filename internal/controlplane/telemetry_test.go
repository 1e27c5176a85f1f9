package controlplane

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promgo "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/statusfmt"
	"github.com/wasmxds/wasmxds/internal/xds"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// startECDSFixture is startFixture with ECDS delivery, under which nodes
// report each plugin's state.
func startECDSFixture(t *testing.T) *serveFixture {
	t.Helper()
	root := t.TempDir()
	f := &serveFixture{t: t, dir: filepath.Join(root, "configs"), module: fetchertest.ProxyWasm("telemetry-test")}
	f.modPath = filepath.Join(root, "filter.wasm")
	if err := os.WriteFile(f.modPath, f.module, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 8080))
	f.write("plugin.yaml", fmt.Sprintf(pluginSpec, f.modPath, "x-first"))
	f.cp = newTestCP(t, Options{ConfigDir: f.dir, CacheDir: filepath.Join(root, "cache"), Delivery: xds.DeliveryECDS})
	runCP(t, f.cp)
	return f
}

func nodeOf(cp *ControlPlane, id string) (xds.NodeStatus, bool) {
	for _, n := range cp.Status().Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return xds.NodeStatus{}, false
}

// An Envoy reporting over its ADS connection gets runtime health in status,
// per plugin from the listeners that carry it; /metrics sums it per plugin
// and module. A node with no ADS stream here is not kept.
func TestRuntimeHealthFromReports(t *testing.T) {
	f := startECDSFixture(t)
	c := xdstest.Start(t, f.cp.XDSAddr(), xdstest.Options{NodeID: "web-1", Labels: map[string]string{"app": "web"}})
	waitUntil(t, "web-1 running add-header", func() bool {
		n, ok := nodeOf(f.cp, "web-1")
		return ok && len(n.Plugins) == 1 && n.Plugins[0].State == xds.PluginRunning
	})
	r, err := xdstest.Report(c.Conn(), c.NodeProto())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	flush := xdstest.Flush{Listeners: []string{"web", "elsewhere"}, Plugins: []string{"add-header"}, Requests: 40, Errors5xx: 10,
		Reloads: 1, AtLeast: 150}
	for range 2 {
		if err := r.Send(flush.Families()); err != nil {
			t.Fatal(err)
		}
	}
	var rt *xds.PluginRuntime
	waitUntil(t, "web-1's runtime in status", func() bool {
		n, _ := nodeOf(f.cp, "web-1")
		rt = n.Plugins[0].Runtime
		return rt != nil && rt.Requests == 80 && n.Telemetry != nil
	})
	if rt.Errors5xx != 20 || rt.VMReloads != 2 || rt.Attention() == "" {
		t.Errorf("runtime %+v, want 80 requests (of web only), 20 5xx, 2 reloads, needing attention", rt)
	}
	want := map[string]string{"plugin": "add-header", "module": statusfmt.Short(n0Plugin(f).SHA256), "track": "main"}
	if v, ok := gathered(t, f.cp, "wasmxds_plugin_requests", want); !ok || v != 80 {
		t.Errorf("wasmxds_plugin_requests%v = %v (%v), want 80", want, v, ok)
	}

	ghost, err := xdstest.Report(c.Conn(), xdstest.Node("ghost", "test", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := ghost.Send(flush.Families()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the ghost's report counted as ignored", func() bool {
		v, _ := gathered(t, f.cp, "wasmxds_telemetry_messages_total", map[string]string{"result": "ignored"})
		return v == 1
	})
	if got := f.cp.tel.Len(); got != 1 {
		t.Errorf("%d nodes kept, want web-1 alone", got)
	}
}

func n0Plugin(f *serveFixture) xds.PluginStatus {
	n, _ := nodeOf(f.cp, "web-1")
	return n.Plugins[0]
}

// With client certificates, a metrics stream reports as a node its identity
// is granted, like an ADS stream: claiming another team's node is refused.
func TestMetricsStreamAuthorizedLikeADS(t *testing.T) {
	m := startMTLS(t)
	m.write("access.yaml", twoTeamsSpec)
	creds := func(id string) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, id)))
	}
	var a *xdstest.Client
	waitUntil(t, "team a's node admitted", func() bool {
		c, err := xdstest.Dial(m.cp.XDSAddr(), xdstest.Options{NodeID: "a-1", Labels: map[string]string{"team": "a"},
			DialOptions: []grpc.DialOption{creds("spiffe://example.org/team-a/1")}})
		if err != nil {
			return false
		}
		// Admitted once the server has its first request, or refused (the
		// grant not read yet): the stream ends, and a new one tries again.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && c.Err() == nil; {
			if _, ok := nodeOf(m.cp, "a-1"); ok {
				a = c
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.Close()
		return false
	})
	t.Cleanup(a.Close)
	own, err := xdstest.Report(a.Conn(), a.NodeProto())
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Send([]*promgo.MetricFamily{xdstest.Gauge("wasm.envoy.wasm.runtime.v8.active", 2)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a-1's own report kept", func() bool { n, _ := nodeOf(m.cp, "a-1"); return n.Telemetry != nil })

	b := xdstest.Start(t, m.cp.XDSAddr(), xdstest.Options{NodeID: "b-1", Labels: map[string]string{"team": "b"},
		DialOptions: []grpc.DialOption{creds("spiffe://example.org/team-b/1")}})
	claim, err := xdstest.Report(b.Conn(), teamNode(t, "a-1", "a"))
	if err != nil {
		t.Fatal(err)
	}
	err = claim.Send([]*promgo.MetricFamily{xdstest.Counter("http.team-a-only.downstream_rq_5xx", 1000)})
	if err == nil {
		err = claim.Close()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "team-b") {
		t.Fatalf("team b's identity reporting as a-1: %v, want PermissionDenied naming the identity", err)
	}
	if v, _ := gathered(t, m.cp, "wasmxds_telemetry_streams_refused_total", map[string]string{"reason": "unauthorized"}); v != 1 {
		t.Errorf("refused streams counted %v, want 1", v)
	}
}

// gathered is the value of the metric name with exactly these labels.
func gathered(t *testing.T, cp *ControlPlane, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := cp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

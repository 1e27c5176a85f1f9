package controlplane

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/faultproxy"
	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/testpki"
	"github.com/wasmxds/wasmxds/internal/xds"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

const rolloutSpecYAML = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: canary}
spec:
  selector: {matchLabels: {app: web}}
  url: file://%s
  rollout: {url: "file://%s", percent: 50}
`

// freeAddr is a loopback address nothing listens on, for a replica whose
// peers must know its admin address before it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// replicaSet is control planes on one spec directory with a rollout.
type replicaSet struct {
	dir, root string
}

func newReplicaSet(t *testing.T) *replicaSet {
	t.Helper()
	root := t.TempDir()
	rs := &replicaSet{dir: filepath.Join(root, "configs"), root: root}
	if err := os.Mkdir(rs.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v1, v2 := filepath.Join(root, "v1.wasm"), filepath.Join(root, "v2.wasm")
	for path, name := range map[string]string{v1: "v1", v2: "v2"} {
		if err := os.WriteFile(path, fetchertest.ProxyWasm(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(rs.dir, "listener.yaml"), []byte(fmt.Sprintf(listenerSpec, 8080)))
	writeFile(t, filepath.Join(rs.dir, "plugin.yaml"), []byte(fmt.Sprintf(rolloutSpecYAML, v1, v2)))
	return rs
}

// start runs a replica named id on admin address admin with peers.
func (rs *replicaSet) start(t *testing.T, id, admin string, opts Options, peers ...string) *ControlPlane {
	t.Helper()
	cp, _ := rs.startStoppable(t, id, admin, opts, peers...)
	return cp
}

// startStoppable is start, with a function that stops the replica before
// the test ends.
func (rs *replicaSet) startStoppable(t *testing.T, id, admin string, opts Options, peers ...string) (*ControlPlane, func()) {
	t.Helper()
	opts.ConfigDir, opts.CacheDir = rs.dir, filepath.Join(rs.root, "cache-"+id)
	opts.AdminListen, opts.ReplicaID, opts.Peers = admin, id, peers
	cp := newTestCP(t, opts)
	return cp, runCP(t, cp)
}

func rolloutOf(cp *ControlPlane) *RolloutReport {
	for _, p := range cp.Status().Plugins {
		if p.Name == "canary" {
			return p.Rollout
		}
	}
	return nil
}

// A halt decided on one replica is applied by its peer through the same
// path as its own (status, metric), naming the node and the replica that
// refused the module; each replica's status lists the other's nodes.
func TestPeersShareHaltsAndNodes(t *testing.T) {
	rs := newReplicaSet(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	regB := prometheus.NewRegistry()
	a := rs.start(t, "a", addrA, Options{}, addrB)
	b := rs.start(t, "b", addrB, Options{Registry: regB}, addrA)
	chosen, _ := chosenAndNot(t, "canary", 50)
	dialEnvoy(t, a.XDSAddr(), chosen, map[string]string{"app": "web"}, nil)

	var rep StatusReport
	waitUntil(t, "b lists a's node, with a's replica", func() bool {
		rep = b.Status()
		return len(rep.Nodes) == 1 && rep.Nodes[0].ID == chosen && rep.Nodes[0].Replica == "a"
	})
	if len(rep.Replicas) != 2 || rep.Replicas[0].ID != "b" || rep.Replicas[1].ID != "a" || rep.Replicas[1].State != PeerUp ||
		rep.Replicas[1].Nodes != 1 || rep.Replicas[1].Address != addrA {
		t.Errorf("b's replicas = %+v, want itself and a (up, 1 node)", rep.Replicas)
	}
	waitUntil(t, "the rollout active on both", func() bool {
		ra, rb := rolloutOf(a), rolloutOf(b)
		return ra != nil && ra.State == RolloutActive && rb != nil && rb.State == RolloutActive
	})
	sha := rolloutOf(a).SHA256
	start := time.Now()
	a.ctrl.rollouts.moduleRefused(chosen, "canary", sha, "Envoy downloaded the module but did not create its VM")
	var halted *RolloutReport
	waitUntil(t, "b halted by a's node", func() bool {
		halted = rolloutOf(b)
		return halted.State == RolloutHalted
	})
	t.Logf("halt applied by the peer %v after it was decided", time.Since(start).Round(time.Millisecond))
	if h := halted.Halted; h == nil || h.Node != chosen || h.Replica != "a" || h.SHA256 != sha ||
		!strings.Contains(h.Reason, "did not create its VM") {
		t.Errorf("b's halt = %+v, want a's node %s on replica a, module %s", h, chosen, sha)
	}
	if got := metricValue(t, regB, "wasmxds_rollout_state", "halted"); got != 1 {
		t.Errorf("b: wasmxds_rollout_state{state=halted} = %v, want 1", got)
	}
	if got := metricValue(t, regB, "wasmxds_fleet_nodes", ""); got != 1 {
		t.Errorf("b: wasmxds_fleet_nodes = %v, want 1", got)
	}

	// A replica that starts later, with nothing on disk, learns the halt.
	c := rs.start(t, "c", freeAddr(t), Options{}, addrA, addrB)
	waitUntil(t, "c halted from what its peers said", func() bool {
		r := rolloutOf(c)
		return r != nil && r.State == RolloutHalted && r.Halted != nil && r.Halted.Replica == "a"
	})
}

// Peers that are down, hang, answer slowly or send garbage hold back
// neither readiness nor delivery; after PeerUnreachable they are shown
// unreachable.
func TestUnansweringPeersBlockNothing(t *testing.T) {
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"id": "x", "halts": [{"plugin": 7}]`)
	}))
	t.Cleanup(garbage.Close)
	var peers []string
	for _, f := range []faultproxy.Fault{{Mode: faultproxy.Down}, {Mode: faultproxy.Hang},
		{Mode: faultproxy.Slow, Delay: time.Minute}, {}} {
		p, err := faultproxy.Start(garbage.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		p.Set(f)
		peers = append(peers, p.Addr())
	}
	rs := newReplicaSet(t)
	reg := prometheus.NewRegistry()
	cp := rs.start(t, "lonely", freeAddr(t), Options{Registry: reg, PeerUnreachable: 3 * time.Second}, peers...)
	waitUntil(t, "ready with no peer answering", func() bool { return cp.notReady() == nil })
	e := dialEnvoy(t, cp.XDSAddr(), "web-1", map[string]string{"app": "web"}, nil)
	e.Await(t, "the listener and the plugin's extension config", func(s xdstest.State) bool {
		return len(s.Type(resource.ListenerType).Resources()) == 1 && len(s.Type(resource.ExtensionConfigType).Resources()) == 1
	})
	waitUntil(t, "every peer unreachable", func() bool {
		rep := cp.Status()
		n := 0
		for _, r := range rep.Replicas[1:] {
			if r.State == PeerUnreachable && !r.Ready {
				n++
			}
		}
		return len(rep.Replicas) == 5 && n == 4
	})
	if got := metricValue(t, reg, "wasmxds_peers", PeerUnreachable); got != 4 {
		t.Errorf("wasmxds_peers{state=unreachable} = %v, want 4", got)
	}
}

// metricValue is the value of the gauge name whose state label (if any)
// is state.
func metricValue(t *testing.T, reg *prometheus.Registry, name, state string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := state == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == "state" && l.GetValue() == state)
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{state=%q}", name, state)
	return 0
}

// With client certificates, peers reach each other over TLS on the admin
// listener with the serving certificate; the peer state is refused to
// plain HTTP and to a certificate that is not a replica's (an Envoy's,
// signed by the same CA), while probes stay plain HTTP.
func TestPeersOverMTLS(t *testing.T) {
	rs := newReplicaSet(t)
	ca := testpki.NewCA(t, "peers CA")
	cert, key := ca.Issue(t, testpki.Names{CN: "wasmxds", DNS: []string{"wasmxds.mesh"}, IPs: []string{"127.0.0.1"}}).
		Write(t, rs.root, "server")
	tlsOpts := Options{TLSCertFile: cert, TLSKeyFile: key, ClientCAFile: ca.Write(t, rs.root, "ca")}
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := rs.start(t, "a", addrA, tlsOpts, addrB)
	b := rs.start(t, "b", addrB, tlsOpts, addrA)
	waitUntil(t, "each replica hears the other", func() bool {
		ra, rb := a.Status().Replicas, b.Status().Replicas
		return len(ra) == 2 && ra[1].State == PeerUp && len(rb) == 2 && rb[1].State == PeerUp
	})
	resp, err := http.Get("http://" + addrA + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("plain /readyz: %v %v", resp, err)
	}
	if resp, err := http.Get("http://" + addrA + peerStatePath); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("plain GET %s: %v %v, want 403", peerStatePath, resp, err)
	}
	envoy := ca.Issue(t, testpki.Names{CN: "web-1", URIs: []string{"spiffe://example.org/web/web-1"}}).TLS(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(),
		Certificates: []tls.Certificate{envoy}}}}
	resp, err = client.Get("https://" + addrA + peerStatePath)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET %s with an Envoy's certificate: %v %v, want 403", peerStatePath, resp, err)
	}
	var doc peerDoc
	replica := ca.Issue(t, testpki.Names{CN: "other", DNS: []string{"wasmxds.mesh"}}).TLS(t)
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{replica}
	resp, err = client.Get("https://" + addrA + peerStatePath)
	if err != nil || resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&doc) != nil || doc.ID != "a" {
		t.Errorf("GET %s with a replica's certificate: %v %v, doc %+v", peerStatePath, resp, err, doc)
	}
}

// A halt shared with peers carries Envoy's reason redacted of the plugin's
// secrets, as status does.
func TestSharedHaltsHoldNoSecret(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	writeSecret(t, token, "s3cr3t-one\n")
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS, ReplicaID: "a"})
	p := rolloutPlugin("oci://r/auth:v2", 50)
	p.Config = `{"header":"x-api-key"}`
	p.SecretRefs = []catalog.SecretRef{{Path: []string{"value"}, File: token, Line: 9}}
	c.onChange(plugins(p))
	sink.until(t, "the rollout", withRollout("b2", 50))
	chosen, _ := chosenAndNot(t, "auth", 50)
	c.rollouts.moduleRefused(chosen, "auth", "b2", `Envoy rejected {"header":"x-api-key","value":"s3cr3t-one"}`)
	sink.until(t, "the rollout withdrawn", noRollout)
	halts := c.rollouts.sharedHalts()
	if len(halts) != 1 || halts[0].Replica != "a" || halts[0].Node != chosen || strings.Contains(halts[0].Reason, "s3cr3t") {
		t.Errorf("shared halts = %+v, want one by %s on a, without the secret", halts, chosen)
	}
}

// fakeResolver answers lookups of one name with its addresses (or its
// error) and fails any other: dns: peers without a DNS server.
type fakeResolver struct {
	mu    sync.Mutex
	name  string
	addrs []net.IPAddr
	err   error
	asked int
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if host != r.name {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r.asked++
	return slices.Clone(r.addrs), r.err
}

func (r *fakeResolver) answer(addrs []net.IPAddr, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs, r.err = addrs, err
}

var (
	loopback4 = net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}
	loopback6 = net.IPAddr{IP: net.IPv6loopback}
)

// dualStackPort is a port free on both 127.0.0.1 and ::1, as replicas
// behind one name share a port on addresses of their own.
func dualStackPort(t *testing.T) string {
	t.Helper()
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		l.Close()
	}
	for range 50 {
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l4.Addr().(*net.TCPAddr).Port)
		l6, err := net.Listen("tcp6", net.JoinHostPort("::1", port))
		l4.Close()
		if err == nil {
			l6.Close()
			return port
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return ""
}

// --peer dns:NAME:PORT is every address NAME resolves to, IPv4 and IPv6,
// at PORT: two replicas given the same dns: peer find each other, each
// recognises its own address among the answers, and a halt decided on one
// reaches the other.
func TestDNSPeerIsEveryAddressOfTheName(t *testing.T) {
	port := dualStackPort(t)
	res := &fakeResolver{name: "replicas.wasmxds.test", addrs: []net.IPAddr{loopback4, loopback6}}
	peer := "dns:replicas.wasmxds.test:" + port
	v4, v6 := net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)
	rs := newReplicaSet(t)
	a := rs.start(t, "a", v4, Options{peerResolver: res}, peer)
	b := rs.start(t, "b", v6, Options{peerResolver: res}, peer)
	for _, c := range []struct {
		cp                     *ControlPlane
		self, other, otherAddr string
	}{{a, "a", "b", v6}, {b, "b", "a", v4}} {
		var rep StatusReport
		waitUntil(t, c.self+" hears "+c.other+" at "+c.otherAddr, func() bool {
			rep = c.cp.Status()
			return len(rep.Replicas) == 2 && rep.Replicas[1].State == PeerUp
		})
		if r := rep.Replicas; r[0].ID != c.self || r[0].State != PeerSelf || r[1].ID != c.other || r[1].Address != c.otherAddr {
			t.Errorf("%s's replicas = %+v, want itself, then %s at %s (its own address among the answers is not a peer)",
				c.self, r, c.other, c.otherAddr)
		}
	}

	waitUntil(t, "the rollout active on both", func() bool {
		ra, rb := rolloutOf(a), rolloutOf(b)
		return ra != nil && ra.State == RolloutActive && rb != nil && rb.State == RolloutActive
	})
	chosen, _ := chosenAndNot(t, "canary", 50)
	a.ctrl.rollouts.moduleRefused(chosen, "canary", rolloutOf(a).SHA256, "Envoy did not create its VM")
	waitUntil(t, "b halted by a's node", func() bool {
		r := rolloutOf(b)
		return r.State == RolloutHalted && r.Halted != nil && r.Halted.Replica == "a" && r.Halted.Node == chosen
	})
}

// A failed lookup keeps the addresses the last one found, and an address
// gone from the answers stays a peer until it has gone unheard for
// peerForget.
func TestDNSPeerAddressesOutliveLookups(t *testing.T) {
	res := &fakeResolver{name: "replicas.wasmxds.test", addrs: []net.IPAddr{loopback4, loopback6}}
	ps := &peerSet{specs: []peerSpec{{dns: "replicas.wasmxds.test", port: "9100"}}, resolver: res,
		unreachable: time.Minute, log: slog.New(slog.DiscardHandler), peers: map[string]*peer{}}
	addrs := func() []string {
		var out []string
		for _, v := range ps.view(time.Now()) {
			out = append(out, v.addr)
		}
		return out
	}
	both := []string{"127.0.0.1:9100", "[::1]:9100"}
	ctx := context.Background()
	ps.resolve(ctx)
	if got := addrs(); !slices.Equal(got, both) {
		t.Fatalf("peers %v, want %v", got, both)
	}
	res.answer(nil, &net.DNSError{Err: "server misbehaving", Name: res.name, IsTemporary: true})
	ps.resolve(ctx)
	if got := addrs(); !slices.Equal(got, both) {
		t.Errorf("after a failed lookup: peers %v, want the last ones, %v", got, both)
	}
	res.answer([]net.IPAddr{loopback4}, nil)
	ps.resolve(ctx)
	if got := addrs(); !slices.Equal(got, both) {
		t.Errorf("just after ::1 left the answers: peers %v, want it kept, %v", got, both)
	}
	ps.mu.Lock()
	ps.peers["[::1]:9100"].added = time.Now().Add(-peerForget - time.Second) // never heard since
	ps.mu.Unlock()
	ps.resolve(ctx)
	if got := addrs(); !slices.Equal(got, both[:1]) {
		t.Errorf("with ::1 out of the answers and unheard for %v: peers %v, want %v", peerForget, got, both[:1])
	}
	if res.asked != 4 {
		t.Errorf("the resolver was asked %d times, want 4 (once per resolve)", res.asked)
	}
}

// A replica that hears of a peer's halt before it resolves the rollout
// module (its edit came late, or it restarted) never pushes the module,
// and reports the halt with the peer's node and replica; a halt of an
// earlier arming (another percent) is ignored, so an edit re-arms the
// rollout on every replica alike.
func TestPeerHaltHeardFirstNeverPushesTheModule(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"},
		gates: map[string]chan struct{}{"oci://r/auth:v2": gate}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS, ReplicaID: "b"})
	p := rolloutPlugin("oci://r/auth:v2", 30)
	c.onChange(plugins(p))
	sink.until(t, "v1 while v2 is pulled", noRollout)
	c.rollouts.setPeerHalts([]sharedHalt{{Plugin: "auth", SHA256: "b2", Spec: specDigest(rolloutSpec(p.Rollout)), Node: "edge-1",
		Reason: "Envoy did not create its VM", Replica: "a"}})
	close(gate)

	deadline := time.After(10 * time.Second)
	for pushes := 0; ; {
		select {
		case in := <-sink.inputs:
			pushes++
			if !noRollout(in) {
				t.Fatalf("push %d sent the rollout module a peer had halted: %+v", pushes, in.Rollouts)
			}
		case <-deadline:
			t.Fatalf("rollout not reported halted: %+v", c.pluginReports()[0].Rollout)
		case <-time.After(20 * time.Millisecond):
		}
		rep := c.pluginReports()[0].Rollout
		if rep.State != RolloutHalted {
			continue
		}
		if h := rep.Halted; h == nil || h.Node != "edge-1" || h.Replica != "a" || rep.SHA256 != "b2" {
			t.Errorf("halt = %+v (module %s), want edge-1's on replica a, module b2", h, rep.SHA256)
		}
		break
	}
	c.onChange(plugins(p)) // one more push, after the resolution
	if in := sink.until(t, "a push", func(xds.Input) bool { return true }); !noRollout(in) {
		t.Errorf("a push after the halt sent the rollout module: %+v", in.Rollouts)
	}

	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 40)))
	sink.until(t, "the rollout re-armed at 40%", withRollout("b2", 40))
}

// A peer's halt by analysis is adopted, reported and passed on as a halt
// by analysis; a cause this replica does not know reads as a refusal.
func TestPeerAnalysisHaltKeepsItsCause(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS, ReplicaID: "b"})
	p := rolloutPlugin("oci://r/auth:v2", 30)
	c.onChange(plugins(p))
	sink.until(t, "the rollout", withRollout("b2", 30))
	c.rollouts.setPeerHalts([]sharedHalt{{Plugin: "auth", SHA256: "b2", Spec: specDigest(rolloutSpec(p.Rollout)), Node: "edge-1",
		Reason: "5xx rate 50.0%", Replica: "a", Cause: HaltAnalysis}})
	sink.until(t, "the peer's halt applied", noRollout)
	if h := c.pluginReports()[0].Rollout.Halted; h == nil || h.Cause != HaltAnalysis || h.Replica != "a" {
		t.Errorf("halt = %+v, want replica a's halt by analysis", h)
	}
	if shared := c.rollouts.sharedHalts(); len(shared) != 1 || shared[0].Cause != HaltAnalysis {
		t.Errorf("halts passed on = %+v, want the halt by analysis", shared)
	}

	doc := peerDoc{ID: "a", Instance: "1", Halts: []sharedHalt{{Plugin: "auth", SHA256: strings.Repeat("b", 64), Cause: "gremlins"}}}
	if err := doc.validate(); err != nil || doc.Halts[0].Cause != "" {
		t.Errorf("a halt of unknown cause: %v, cause %q; want it kept as a refusal", err, doc.Halts[0].Cause)
	}
}

// wasmxds_fleet_nodes counts each node of the fleet once: a node on this
// replica and on a peer (it moved) once, and a node only a peer gone
// unreachable reported not at all.
func TestFleetNodesCountEachNodeOnce(t *testing.T) {
	rs := newReplicaSet(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	a, stop := rs.startStoppable(t, "a", addrA, Options{}, addrB)
	regB := prometheus.NewRegistry()
	b := rs.start(t, "b", addrB, Options{Registry: regB, PeerUnreachable: 2 * time.Second}, addrA)
	web := map[string]string{"app": "web"}
	dialEnvoy(t, a.XDSAddr(), "moved", web, nil)
	dialEnvoy(t, a.XDSAddr(), "only-on-a", web, nil)
	dialEnvoy(t, b.XDSAddr(), "moved", web, nil)
	waitUntil(t, "b to count the moved node once and a's other node", func() bool {
		return len(b.Status().Nodes) == 2 && metricValue(t, regB, "wasmxds_fleet_nodes", "") == 2
	})
	stop()
	waitUntil(t, "b to count only its own node once a is unreachable", func() bool {
		return metricValue(t, regB, "wasmxds_peers", PeerUnreachable) == 1
	})
	if got := metricValue(t, regB, "wasmxds_fleet_nodes", ""); got != 1 {
		t.Errorf("wasmxds_fleet_nodes = %v with a unreachable, want 1 (b's own node)", got)
	}
}

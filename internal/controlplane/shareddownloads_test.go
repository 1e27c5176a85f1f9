package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// Behind one address, an Envoy's module download may reach another replica
// than the one holding its stream. Here a node on replica a ACKs its first
// module with no download seen, and the download reaches replica b: b tells
// a, and a sends the node the module's confirmation, as if it had served
// the download itself.
func TestPeersShareModuleDownloads(t *testing.T) {
	rs := newReplicaSet(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := rs.start(t, "a", addrA, Options{}, addrB)
	b := rs.start(t, "b", addrB, Options{}, addrA)
	_, other := chosenAndNot(t, "canary", 50)
	dialEnvoy(t, a.XDSAddr(), other, map[string]string{"app": "web"}, nil)
	body, err := os.ReadFile(filepath.Join(rs.root, "v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	v1 := hex.EncodeToString(sum[:])
	waitUntil(t, "the node on a runs its first module, no download seen", func() bool {
		return pluginOn(a, other, "canary").SHA256 == v1 && pluginOn(a, other, "canary").State == xds.PluginRunning
	})
	if c := confirmations(t, a); c != 0 {
		t.Fatalf("a sent %v confirmations before any download", c)
	}

	resp, err := http.Get("http://" + b.HTTPAddr() + "/modules/sha256/" + v1)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download from b: %s", resp.Status)
	}
	waitUntil(t, "a confirms the module downloaded from b", func() bool {
		return confirmations(t, a) >= 1
	})
	waitUntil(t, "the node on a runs the confirmed module", func() bool {
		return pluginOn(a, other, "canary").State == xds.PluginRunning
	})
}

// confirmations is wasmxds_xds_module_confirmations_total of cp.
func confirmations(t *testing.T, cp *ControlPlane) float64 {
	t.Helper()
	v, _ := gathered(t, cp, "wasmxds_xds_module_confirmations_total", map[string]string{})
	return v
}

// pluginOn is plugin's state on node, as cp's xDS server reports it.
func pluginOn(cp *ControlPlane, node, plugin string) xds.PluginStatus {
	for _, n := range cp.server.Status() {
		if n.ID != node {
			continue
		}
		for _, p := range n.Plugins {
			if p.Name == plugin {
				return p
			}
		}
	}
	return xds.PluginStatus{}
}

// A replica lists the downloads it served within the window, newest kept
// past the bound; a peer's download is taken once per peer process, and
// what was taken is not listed again (nothing echoes between replicas).
func TestDownloadShareListsServedDownloadsOnce(t *testing.T) {
	var d downloadShare
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sha := strings.Repeat("a", 64)
	d.add(sha, "10.0.0.1:5000", t0)
	d.add(sha, "10.0.0.2", t0.Add(time.Second))
	got := d.recent(t0.Add(2 * time.Second))
	if len(got) != 2 || got[0].Addr != "10.0.0.1" || got[1].Addr != "10.0.0.2" {
		t.Fatalf("recent = %+v, want both downloads by IP", got)
	}
	if got := d.recent(t0.Add(sharedDownloadWindow + 500*time.Millisecond)); len(got) != 1 || got[0].Addr != "10.0.0.2" {
		t.Errorf("recent past the first's window = %+v, want the second only", got)
	}
	peer := []sharedDownload{{SHA256: sha, Addr: "10.0.0.9", At: t0}}
	if f := d.fresh("peer-1", peer, t0); len(f) != 1 {
		t.Errorf("first sight of a peer's download: %+v, want it", f)
	}
	if f := d.fresh("peer-1", peer, t0.Add(time.Second)); len(f) != 0 {
		t.Errorf("the same download again: %+v, want nothing", f)
	}
	if f := d.fresh("peer-2", peer, t0.Add(time.Second)); len(f) != 1 {
		t.Errorf("another peer's download: %+v, want it", f)
	}
	// The same instant decoded in another location is the same download.
	again := []sharedDownload{{SHA256: sha, Addr: "10.0.0.9", At: t0.In(time.FixedZone("+0530", 5*3600+1800))}}
	if f := d.fresh("peer-1", again, t0.Add(time.Second)); len(f) != 0 {
		t.Errorf("the same download in another time zone: %+v, want nothing", f)
	}
	d.add(sha, "[fe80::1%eth0]:5000", t0.Add(2*time.Second))
	if got := d.recent(t0.Add(2 * time.Second)); got[len(got)-1].Addr != "fe80::1" {
		t.Errorf("a link-local download listed as %q, want its address without the zone", got[len(got)-1].Addr)
	}
	for _, dl := range d.recent(t0.Add(sharedDownloadWindow)) {
		if dl.Addr == "10.0.0.9" {
			t.Errorf("a download taken from a peer is listed for peers: %+v", dl)
		}
	}
	for i := range maxPeerDownloads + 10 {
		d.add(sha, "10.1.0.1", t0.Add(time.Duration(i)*time.Millisecond))
	}
	if got := d.recent(t0.Add(2 * time.Second)); len(got) != maxPeerDownloads {
		t.Errorf("%d downloads listed, want the newest %d", len(got), maxPeerDownloads)
	}
}

// A peer's download that does not parse is dropped; the rest of its state
// (here a halt) still counts.
func TestPeerDocKeepsItsStatePastABadDownload(t *testing.T) {
	doc := peerDoc{ID: "b", Instance: "i", Halts: []sharedHalt{{Plugin: "p", SHA256: strings.Repeat("a", 64)}},
		Downloads: []sharedDownload{{SHA256: strings.Repeat("a", 64), Addr: "fe80::1%eth0"},
			{SHA256: "nothex", Addr: "10.0.0.1"}, {SHA256: strings.Repeat("b", 64), Addr: "10.0.0.2"}}}
	if err := doc.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if len(doc.Halts) != 1 || len(doc.Downloads) != 1 || doc.Downloads[0].Addr != "10.0.0.2" {
		t.Errorf("after validate: halts %+v, downloads %+v; want the halt and the one good download", doc.Halts, doc.Downloads)
	}
}

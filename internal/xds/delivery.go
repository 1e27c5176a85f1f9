package xds

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Plugin delivery states on a node, the values of PluginStatus.State.
const (
	// PluginRunning: the node ACKed the plugin's extension config. Envoy
	// creates the VM from cached code before it ACKs, so the VM runs. A
	// plugin's first module (see confirm.go) is running once a config that
	// made Envoy create the VM from its cache was ACKed.
	PluginRunning = "running"
	// PluginPending: the config was sent and not confirmed yet, or the node
	// NACKed it because it was still downloading (or compiling) the module;
	// a re-push is scheduled. A first module the node fetched as its
	// listener warmed is pending until its confirmation is ACKed.
	PluginPending = "pending"
	// PluginFailed: the node refused the module after downloading it (the
	// VM did not load or start), or never managed to load it. Reason says
	// which; the node keeps running the plugin's last good config.
	PluginFailed = "failed"
)

// PluginStatus is one plugin's module on one node.
type PluginStatus struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	State  string `json:"state"` // running, pending or failed
	Reason string `json:"reason,omitempty"`
	// Runtime is how the plugin ran on the node over the last minute, when
	// the node reports metrics.
	Runtime *PluginRuntime `json:"runtime,omitempty"`
}

// Re-push pacing. Envoy starts the download when it NACKs a cache miss and
// the module server reports when it finished sending it; the re-push then
// follows after downloadSettle, the time Envoy needs to verify the module
// and put it in its cache. The backoff covers downloads the module server
// cannot see complete (a proxy in between, a slow link).
const (
	downloadSettle  = 150 * time.Millisecond
	repushBaseDelay = 100 * time.Millisecond
	repushMaxDelay  = 5 * time.Second
	maxExpectedMiss = 8 // NACKs of one module before it counts as failed (and loadGiveUp since the first)
	// failAfterDownload NACKs of re-pushes sent after the node downloaded
	// the module make it failed.
	failAfterDownload = 3
	loadGiveUp        = 15 * time.Second // at least, before a node not seen downloading from its own address is refused
	downloadsForget   = 10 * time.Minute
	downloadsSweep    = time.Minute
	versionsRecorded  = 8 // ECDS versions per group remembered for (N)ACK attribution
)

// createFailure finds the plugin in Envoy's NACK of a Wasm extension config
// ("Unable to create Wasm plugin P"; older Envoys said "HTTP filter P").
// Envoy sends the same words for a module it has not cached yet and for one
// whose VM failed, so which it was is decided from the downloads seen.
var createFailure = regexp.MustCompile(`Unable to create Wasm (?:plugin|HTTP filter) (\S+)`)

// ecdsEntry is one plugin's extension config in a sent version.
type ecdsEntry struct {
	sha string
	ext *corev3.TypedExtensionConfig
	// nackOff: the config does not set nack_on_code_cache_miss (a first
	// module, fetched as a listener warms), so Envoy may ACK it before the
	// VM exists.
	nackOff bool
}

// pluginDelivery is what one node did with one plugin's module: where it
// stands (its phase, see machine.go) and the counts the NACK verdicts read.
type pluginDelivery struct {
	PluginStatus
	phase     phase
	misses    int       // NACKs of this module
	firstMiss time.Time // first NACK of this module
	// afterDownload counts NACKs of re-pushes sent after the node had
	// downloaded the module. A busy Envoy may still be reading a download
	// the server has finished sending ("failed to load (in progress)"), so
	// one such NACK is not yet proof that the module cannot run.
	afterDownload int
	// firstIn is the group the node last ACKed the module in as a first
	// module not confirmed by that ACK (see confirm.go), "" once an ACK
	// confirmed it.
	firstIn string
	// sentAt is when the node was first sent this module: a download
	// through a proxy before it was someone else's.
	sentAt time.Time
}

// deliveries follows every node's plugins.
type deliveries struct {
	mu    sync.Mutex
	nodes map[string]map[string]*pluginDelivery // node id → plugin → state
	addrs map[string]string                     // node id → IP of its ADS connection
	// atAddr counts the nodes at each IP: a download from an IP no node
	// connects from came through a proxy (see nodeAddr).
	atAddr map[string]int
}

func newDeliveries() *deliveries {
	return &deliveries{nodes: map[string]map[string]*pluginDelivery{}, addrs: map[string]string{},
		atAddr: map[string]int{}}
}

// sentAt is when node was first sent plugin name's module sha; zero if it
// was not.
func (d *deliveries) sentAt(node, name, sha string) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.nodes[node][name]; p != nil && p.SHA256 == sha {
		return p.sentAt
	}
	return time.Time{}
}

func (d *deliveries) plugin(node, name, sha string) *pluginDelivery {
	ps := d.nodes[node]
	if ps == nil {
		ps = map[string]*pluginDelivery{}
		d.nodes[node] = ps
	}
	p := ps[name]
	if p == nil || p.SHA256 != sha {
		p = &pluginDelivery{PluginStatus: PluginStatus{Name: name, SHA256: sha}}
		p.enter(phaseSent, "")
		ps[name] = p
	}
	return p
}

// sent marks the plugins of a version sent to a node pending where the
// node does not already run that module, and forgets plugins the version
// no longer has. A module the node refused stays failed while it is
// refused: the node is sent the last good config instead, or a stand-in
// (no module) when there is none.
func (d *deliveries) sent(node string, entries map[string]ecdsEntry, refused map[string]map[string]bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name := range d.nodes[node] {
		if _, ok := entries[name]; !ok {
			delete(d.nodes[node], name)
		}
	}
	for name, e := range entries {
		if e.sha != "" && !d.stillRefused(node, name, refused) {
			if p := d.plugin(node, name, e.sha); p.sentAt.IsZero() {
				p.sentAt = now
			}
		}
	}
}

// acked marks every plugin of an ACKed version running, except a module
// the node refused and is still refused. Plugins in first are first
// modules of group the ACK does not confirm (see confirm.go): a node that
// downloaded the module (true) stays pending until its confirmation is
// ACKed; one that did not (false) created the VM from its cache before it
// ACKed, so it runs, unless a download shows later (see downloaded).
func (d *deliveries) acked(node, group string, entries map[string]ecdsEntry, refused map[string]map[string]bool,
	first map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, e := range entries {
		if e.sha == "" || d.stillRefused(node, name, refused) {
			continue
		}
		p := d.plugin(node, name, e.sha)
		p.misses = 0
		downloaded, unconfirmed := first[name]
		p.firstIn = ""
		switch {
		case !unconfirmed:
			p.enter(phaseRunning, "")
		case downloaded:
			p.firstIn = group
			p.enter(phaseWarming, "")
		default:
			p.firstIn = group
			p.enter(phaseProvisional, "")
		}
	}
}

// firstModule is a plugin's first module in a group, to be confirmed.
type firstModule struct{ group, plugin string }

// downloaded marks pending the unconfirmed first modules sha of the nodes
// at ip (every node, when ip is unknown) and returns their groups and
// plugins, each once.
func (d *deliveries) downloaded(sha, ip string) []firstModule {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []firstModule
	for node, ps := range d.nodes {
		if ip != "" && d.addrs[node] != ip {
			continue
		}
		for name, p := range ps {
			if p.SHA256 != sha || p.firstIn == "" || p.phase == phaseFailed {
				continue
			}
			p.enter(phaseWarming, "")
			if f := (firstModule{group: p.firstIn, plugin: name}); !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func (d *deliveries) stillRefused(node, name string, refused map[string]map[string]bool) bool {
	if len(refused[name]) == 0 {
		return false
	}
	cur := d.nodes[node][name]
	return cur != nil && cur.phase == phaseFailed && refused[name][cur.SHA256]
}

// nackVerdict is what a NACK of one plugin's module meant.
type nackVerdict struct {
	expected bool   // a cache miss: the node is fetching the module
	misses   int    // NACKs of this module so far
	reason   string // why it failed, when not expected
}

// nacked classifies a node's NACK of plugin name's module sha. The first
// NACK of a module is Envoy's cache miss, unless it answers a confirmation
// (confirm) sent after the node downloaded the module. A later one is a
// failure once the node downloaded the module before the re-push it
// answers (downloaded), or after too many attempts.
func (d *deliveries) nacked(node, name, sha, detail string, downloaded, anyDownload, confirm bool, now time.Time) nackVerdict {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.plugin(node, name, sha)
	if p.misses == 0 {
		p.firstMiss = now
	}
	p.misses++
	v := nackVerdict{expected: true, misses: p.misses}
	switch {
	case p.misses == 1 && !(confirm && downloaded):
	case downloaded && p.afterDownload+1 < failAfterDownload:
		p.afterDownload++
	case downloaded:
		p.afterDownload++
		v = nackVerdict{misses: p.misses, reason: fmt.Sprintf("Envoy downloaded module %s but did not create its VM: "+
			"the module failed to load or its VM refused to start (Envoy: %s)", shortDigest(sha), detail)}
	case now.Sub(p.firstMiss) <= loadGiveUp:
		// Not seen downloading from its own address: the node may still
		// be fetching (through a proxy, whose downloads bring re-pushes
		// forward), so it is not refused before loadGiveUp.
	case p.misses >= maxExpectedMiss && anyDownload:
		v = nackVerdict{misses: p.misses, reason: fmt.Sprintf("Envoy did not create module %s's VM after %d attempts in %s, "+
			"though the module was served: the module failed to load, its VM refused to start, or the download did not "+
			"reach the node or verify (Envoy: %s)", shortDigest(sha), p.misses, now.Sub(p.firstMiss).Round(time.Millisecond), detail)}
	case p.misses >= maxExpectedMiss || !anyDownload:
		v = nackVerdict{misses: p.misses, reason: fmt.Sprintf("Envoy did not load module %s after %d attempts in %s: "+
			"the download failed or did not verify (Envoy: %s)", shortDigest(sha), p.misses,
			now.Sub(p.firstMiss).Round(time.Millisecond), detail)}
	}
	if v.expected {
		p.enter(phaseFetching, "")
	} else {
		p.enter(phaseFailed, v.reason)
	}
	return v
}

// status returns a node's plugins sorted by name.
func (d *deliveries) status(node string) []PluginStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]PluginStatus, 0, len(d.nodes[node]))
	for _, name := range slices.Sorted(maps.Keys(d.nodes[node])) {
		out = append(out, d.nodes[node][name].PluginStatus)
	}
	return out
}

// allRunning reports whether every one of nodes runs plugin name.
func (d *deliveries) allRunning(nodes []string, name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range nodes {
		if p := d.nodes[n][name]; p == nil || p.State != PluginRunning {
			return false
		}
	}
	return len(nodes) > 0
}

// count returns how many (node, plugin) pairs are in state.
func (d *deliveries) count(state string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, ps := range d.nodes {
		for _, p := range ps {
			if p.State == state {
				n++
			}
		}
	}
	return n
}

func (d *deliveries) forget(node string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.nodes, node)
	if ip, ok := d.addrs[node]; ok {
		d.unaddrLocked(ip)
		delete(d.addrs, node)
	}
}

// ecdsEntries maps each plugin's extension config to its plugin and module.
// Other configs (the stand-in for a module a node refused before it ever
// ran there) have no module: sha is "".
func ecdsEntries(exts []*corev3.TypedExtensionConfig) map[string]ecdsEntry {
	out := make(map[string]ecdsEntry, len(exts))
	for _, e := range exts {
		name, ok := EcdsPluginName(e.Name)
		if !ok {
			continue
		}
		pc := wasmPluginConfig(e.GetTypedConfig())
		if pc == nil {
			out[name] = ecdsEntry{ext: e}
			continue
		}
		out[name] = ecdsEntry{sha: pc.GetVmConfig().GetCode().GetRemote().GetSha256(), ext: e,
			nackOff: !pc.GetVmConfig().GetNackOnCodeCacheMiss()}
	}
	return out
}

// repushDelay is the backoff before the n-th re-push of a module.
func repushDelay(n int) time.Duration {
	d := repushBaseDelay
	for i := 1; i < n && d < repushMaxDelay; i++ {
		d *= 2
	}
	return min(d, repushMaxDelay)
}

// recordECDS remembers which plugin modules an ECDS version carries, so
// that an ACK or NACK of it can be put down to each plugin. entries is not
// modified afterwards (groups may share it).
func (g *group) recordECDS(version string, entries map[string]ecdsEntry) {
	if _, ok := g.ecds[version]; ok {
		return
	}
	g.ecds[version] = entries
	g.ecdsOrder = append(g.ecdsOrder, version)
	if len(g.ecdsOrder) > versionsRecorded {
		delete(g.ecds, g.ecdsOrder[0])
		g.ecdsOrder = g.ecdsOrder[1:]
	}
}

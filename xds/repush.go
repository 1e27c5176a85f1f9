package xds

import (
	"context"

	"fmt"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/grpc/peer"
	"k8s.io/utils/clock"

	"github.com/wasmxds/wasmxds/catalog"
)

// repushKey is one plugin's extension config in one group's snapshot;
// settle marks the push that drops the attempt mark again.
type repushKey struct {
	group, plugin string
	settle        bool
	// refresh rebuilds the group as it is, with no attempt mark: it
	// learnt of a refusal in its label set, or may now take a rollout.
	refresh bool
	// confirm sends the group's unconfirmed first module of the plugin
	// again as a swap (see confirm.go).
	confirm bool
}

// repusher runs delayed re-pushes, at most one pending per key, on the
// server's clock. A re-push due at once runs on a goroutine of its own
// right away (a fake clock would hold a zero-delay timer until stepped).
// Close stops them and waits for any that is running.
type repusher struct {
	fire  func(repushKey)
	clock clock.WithDelayedExecution

	mu     sync.Mutex
	closed bool
	timers map[repushKey]*repushTimer
	wg     sync.WaitGroup
	// running counts the re-pushes that are due: started on a goroutine
	// and not yet returned. A timer's function only counts and starts the
	// goroutine: a fake clock calls it with its own lock held.
	running atomic.Int32
}

type repushTimer struct {
	t   clock.Timer // nil for a re-push due at once
	at  time.Time
	sha string // the module the re-push is for
}

func newRepusher(clk clock.WithDelayedExecution, fire func(repushKey)) *repusher {
	return &repusher{fire: fire, clock: clk, timers: map[repushKey]*repushTimer{}}
}

// schedule re-pushes k after the delay, unless one is already due sooner.
func (r *repusher) schedule(k repushKey, sha string, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	at := r.clock.Now().Add(after)
	if cur := r.timers[k]; cur != nil {
		if !cur.at.After(at) {
			cur.sha = sha
			return
		}
		if cur.t == nil || !cur.t.Stop() {
			return // firing now; the re-push it makes is at least as early
		}
		r.wg.Done()
	}
	rt := &repushTimer{at: at, sha: sha}
	r.wg.Add(1)
	r.timers[k] = rt
	if after <= 0 {
		r.start(k, rt)
		return
	}
	rt.t = r.clock.AfterFunc(after, func() { r.start(k, rt) })
}

// start runs a due re-push on a goroutine of its own.
func (r *repusher) start(k repushKey, rt *repushTimer) {
	r.running.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.running.Add(-1)
		r.mu.Lock()
		run := !r.closed && r.timers[k] == rt
		if run {
			delete(r.timers, k)
		}
		r.mu.Unlock()
		if run {
			r.fire(k)
		}
	}()
}

// served brings forward the re-pushes waiting for module sha, which a node
// just finished downloading.
func (r *repusher) served(sha string) {
	r.mu.Lock()
	var due []repushKey
	for k, rt := range r.timers {
		if rt.sha == sha {
			due = append(due, k)
		}
	}
	r.mu.Unlock()
	for _, k := range due {
		r.schedule(k, sha, downloadSettle)
	}
}

func (r *repusher) close() {
	r.mu.Lock()
	r.closed = true
	for k, rt := range r.timers {
		if rt.t != nil && rt.t.Stop() {
			r.wg.Done()
		}
		delete(r.timers, k)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// ModuleServed tells the server that the module server sent module sha256
// whole to remote (host:port): an Envoy that NACKed it as not cached now
// has it, so its re-push is brought forward.
func (s *Server) ModuleServed(sha256, remote string) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	s.downloads.record(sha256, host, s.clock.Now())
	s.repush.served(sha256)
	s.confirmDownloaded(sha256, host)
}

// repushPlugin sends a plugin's config to a group again, marked with the
// attempt (see withAttempt) so that Envoy does not take it for the config
// it already has.
func (s *Server) repushPlugin(k repushKey) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	g, in := s.groups[k.group], s.input
	if g == nil || in == nil {
		s.mu.Unlock()
		return
	}
	switch {
	case k.refresh:
	case k.confirm:
		if !startConfirmLocked(g, k.plugin) {
			s.mu.Unlock()
			return
		}
		g.retries[k.plugin]++
		g.repushed[k.plugin] = s.clock.Now()
		s.metrics.confirmations.Inc()
	case k.settle:
		g.retries[k.plugin] = 0
	default:
		g.retries[k.plugin]++
		g.repushed[k.plugin] = s.clock.Now()
		s.metrics.repushes.Inc()
	}
	s.mu.Unlock()
	s.rebuild(k.group, *in, s.shared)
}

// settleLater drops the attempt mark of plugins that every node of the
// group now runs: their config goes back to the plain one, a function of
// the specs and modules alone, so that versions are again the same in every
// replica and after restarts. Envoy takes the plain config as a config
// change: it finds the code cached and the VM running, and only
// reconfigures the plugin.
func (s *Server) settleLater(group string) {
	s.mu.Lock()
	g := s.groups[group]
	var marked []string
	if g != nil {
		for name, n := range g.retries {
			if refused := len(s.refusals[g.labelsKey][name]) > 0; n > 0 && !refused {
				marked = append(marked, name)
			}
		}
	}
	s.mu.Unlock()
	if len(marked) == 0 {
		return
	}
	members := s.tracker.members(group)
	for _, name := range marked {
		if s.deliveries.allRunning(members, name) {
			s.repush.schedule(repushKey{group: group, plugin: name, settle: true}, "", 0)
		}
	}
}

// streamIP is the IP address an ADS stream comes from, "" if unknown.
func streamIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return ""
	}
	return host
}

// ecdsNack handles a node's NACK of extension configs. It returns true when
// the NACK was expected (the node is fetching a module it had not cached)
// and is therefore not an error; the plugin is re-pushed later.
func (s *Server) ecdsNack(nodeID, group string, nack *Nack) bool {
	m := createFailure.FindStringSubmatch(nack.Error)
	if m == nil {
		s.ecdsRejected(nodeID, group, nack)
		return false
	}
	plugin := m[1]
	s.mu.Lock()
	g := s.groups[group]
	var e ecdsEntry
	var found, confirm bool
	var repushed time.Time
	if g != nil {
		e, found = g.ecds[nack.Version][plugin]
		repushed = g.repushed[plugin]
		confirm = found && !e.nackOff && e.sha != "" && g.confirming[plugin] == e.sha
	}
	s.mu.Unlock()
	if !found || e.sha == "" {
		return false
	}
	byNode, anyone := s.downloads.before(e.sha, s.deliveries.addr(nodeID), repushed)
	v := s.deliveries.nacked(nodeID, plugin, e.sha, nack.Error, byNode && !repushed.IsZero(), anyone, confirm, s.clock.Now())
	k := repushKey{group: group, plugin: plugin}
	if v.expected {
		s.metrics.cacheMisses.Inc()
		s.log.Info("envoy is fetching a module it had not cached; re-push scheduled", "node", nodeID,
			"plugin", plugin, "sha256", e.sha, "attempt", v.misses)
		s.repush.schedule(k, e.sha, repushDelay(v.misses))
		return true
	}
	s.log.Warn("envoy refused a module; its last good config keeps serving", "node", nodeID,
		"plugin", plugin, "sha256", e.sha, "reason", v.reason)
	var siblings []string
	s.mu.Lock()
	// A refusal that arrives after the module left the Input (a rollout
	// halted meanwhile) needs no recording: nobody is sent it any more.
	if g != nil && s.input != nil && inputCarries(*s.input, plugin, e.sha) {
		byPlugin := s.refusals[g.labelsKey]
		if byPlugin == nil {
			byPlugin = map[string]map[string]bool{}
			s.refusals[g.labelsKey] = byPlugin
		}
		if byPlugin[plugin] == nil {
			byPlugin[plugin] = map[string]bool{}
		}
		byPlugin[plugin][e.sha] = true
		for key, o := range s.groups {
			if o != g && o.labelsKey == g.labelsKey {
				siblings = append(siblings, key)
			}
		}
	}
	s.mu.Unlock()
	s.repush.schedule(k, "", 0)
	// The label set's other groups stop sending the module too.
	for _, key := range siblings {
		s.repush.schedule(repushKey{group: key, plugin: plugin, refresh: true}, "", 0)
	}
	if s.onFailed != nil {
		s.onFailed(nodeID, plugin, e.sha, v.reason)
	}
	return false
}

// ecdsRejected reports, for a NACK of extension configs that is not about
// creating a plugin (Envoy refused the config itself), each plugin the
// error names whose config in the rejected version carries a module: the
// node did not take that module.
func (s *Server) ecdsRejected(nodeID, group string, nack *Nack) {
	if s.onFailed == nil {
		return
	}
	s.mu.Lock()
	var entries map[string]ecdsEntry
	if g := s.groups[group]; g != nil {
		entries = g.ecds[nack.Version]
	}
	s.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range namedPlugin.FindAllStringSubmatch(nack.Error, -1) {
		name := m[1]
		if e, ok := entries[name]; ok && e.sha != "" && !seen[name] {
			seen[name] = true
			s.onFailed(nodeID, name, e.sha, "Envoy rejected the extension config: "+nack.Error)
		}
	}
}

// namedPlugin finds extension config names (wasmxds.<plugin>) in Envoy's
// error messages; plugin names are DNS-1123 names.
var namedPlugin = regexp.MustCompile(`wasmxds\.([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)`)

// ecdsAck records the plugins of an ACKed version as running and keeps
// their configs as the group's last good ones.
func (s *Server) ecdsAck(nodeID string, a *ack) {
	s.mu.Lock()
	g := s.groups[a.group]
	if g == nil {
		s.mu.Unlock()
		return
	}
	entries := g.ecds[a.version]
	refused := s.refusalsOfLocked(g.labelsKey)
	ip := s.deliveries.addr(nodeID)
	var ready []string // plugins whose rollout waited for the group's first module
	var first map[string]bool
	var confirm []string
	for name, e := range entries {
		if e.sha == "" || refused[name][e.sha] {
			continue
		}
		if e.nackOff && !confirmedLocked(g, name, e.sha) {
			// A first module: Envoy ACKs it before its VM exists when it
			// fetches the module as its listener warms (see confirm.go).
			if first == nil {
				first = map[string]bool{}
			}
			g.unconfirmed[name] = e.sha
			if downloaded, _ := s.downloads.before(e.sha, ip, s.clock.Now()); downloaded {
				first[name] = true
				confirm = append(confirm, name)
				continue // a good config once confirmed
			}
			first[name] = false
		} else if !e.nackOff && g.unconfirmed[name] == e.sha {
			delete(g.unconfirmed, name) // the VM runs: confirmed
			delete(g.confirming, name)
		}
		if len(g.lastGood[name]) == 0 && s.input != nil && s.input.waitsForRollout(g.bucket, name) {
			ready = append(ready, name)
		}
		g.lastGood[name] = g.lastGood[name].add(e)
		fam := s.familyGood[g.family]
		if fam == nil {
			fam = map[string]goodConfigs{}
			s.familyGood[g.family] = fam
		}
		fam[name] = fam[name].add(e)
	}
	s.mu.Unlock()
	s.deliveries.acked(nodeID, a.group, entries, refused, first)
	for _, name := range confirm {
		s.repush.schedule(repushKey{group: a.group, plugin: name, confirm: true}, entries[name].sha, downloadSettle)
	}
	for _, name := range ready {
		s.repush.schedule(repushKey{group: a.group, plugin: name, refresh: true}, "", 0)
	}
	s.settleLater(a.group)
}

// ecdsSent records the plugins of a version sent to a node as pending.
func (s *Server) ecdsSent(nodeID, group, version string) {
	s.mu.Lock()
	var entries map[string]ecdsEntry
	var refused map[string]map[string]bool
	if g := s.groups[group]; g != nil {
		entries, refused = g.ecds[version], s.refusalsOfLocked(g.labelsKey)
	}
	s.mu.Unlock()
	if entries != nil {
		s.deliveries.sent(nodeID, entries, refused)
	}
}

// refusalStep is what happens to one extension config of a translation
// in one group (see planRefusalsLocked).
type refusalStep struct {
	nackOff bool                         // fetch the module as a listener warms, not with a cache-miss NACK
	attempt int                          // > 0: mark the config with this re-push attempt
	good    *corev3.TypedExtensionConfig // replace the config with the last good one
	standIn bool                         // replace the config with the failure policy's stand-in
}

// planRefusalsLocked decides, per extension config of tr, how the group
// gets it: re-pushed configs are marked with their attempt, and the config
// of a module a node of the group's label set refused is replaced with the
// plugin's last good config or, if it never ran there, with the stand-in
// its failure policy calls for. One refused module thus never holds up the
// other plugins, and Envoy is not asked again and again to start a VM that
// fails. A module that leaves the Input is no longer refused (see
// liftRefusalsLocked). It also resets a
// plugin's re-push count when its module changes. The key names the plan,
// so that groups with equal plans share the work of applying it.
func (s *Server) planRefusalsLocked(g *group, tr *translation) ([]refusalStep, string) {
	plan := make([]refusalStep, len(tr.entries))
	var key strings.Builder
	for i, entry := range tr.entries {
		name := tr.names[i]
		if name == "" {
			continue
		}
		if g.retryOf[name] != entry.sha {
			g.retryOf[name], g.retries[name] = entry.sha, 0
		}
		refused := s.refusedLocked(g.labelsKey, name, entry.sha)
		if sha, ok := g.unconfirmed[name]; ok && (sha != entry.sha || refused) {
			delete(g.unconfirmed, name)
			delete(g.confirming, name)
		}
		step := &plan[i]
		switch {
		case !refused:
			// A plugin's first module (or the one the group already
			// runs) is fetched the way a new listener warms: Envoy keeps
			// its previous listener until the module is loaded. A
			// cache-miss NACK here would end that warming and put the
			// failure policy's stand-in in front of traffic meanwhile
			// (403 for FAIL_CLOSE): an outage a healthy path never had.
			// Its confirmation is a swap (see confirm.go).
			step.nackOff = !swapping(g, name, entry.sha) && g.confirming[name] != entry.sha
			step.attempt = g.retries[name]
		default:
			// The module the group's nodes ran, else the one nodes of the
			// same translation ran, else the failure policy's stand-in.
			usable := func(sha string) bool { return !s.refusedLocked(g.labelsKey, name, sha) }
			if good, ok := g.lastGood[name].newest(usable); ok {
				step.good = good.ext
			} else if good, ok := s.familyGood[g.family][name].newest(usable); ok {
				step.good = good.ext
			} else {
				step.standIn = true
			}
		}
		fmt.Fprintf(&key, "%d:%t:%d:%p:%t;", i, step.nackOff, step.attempt, step.good, step.standIn)
	}
	return plan, key.String()
}

// applyPlan returns exts with plan applied; exts itself is left as it is.
func applyPlan(exts []*corev3.TypedExtensionConfig, plan []refusalStep) []*corev3.TypedExtensionConfig {
	out := slices.Clone(exts)
	for i, step := range plan {
		e := out[i]
		switch {
		case step.good != nil:
			out[i] = step.good
		case step.standIn:
			if alt := standInExtension(e); alt != nil {
				out[i] = alt
			}
		default:
			if step.nackOff {
				e = withNackOnMiss(e, false)
			}
			if step.attempt > 0 {
				e = withAttempt(e, step.attempt)
			}
			out[i] = e
		}
	}
	return out
}

// standInExtension is the failure-policy stand-in for a Wasm extension
// config, nil if it cannot be built.
func standInExtension(e *corev3.TypedExtensionConfig) *corev3.TypedExtensionConfig {
	pc := wasmPluginConfig(e.GetTypedConfig())
	if pc == nil {
		return nil
	}
	strategy := catalog.FailClose
	if pc.GetFailurePolicy() == wasmv3.FailurePolicy_FAIL_OPEN {
		strategy = catalog.FailOpen
	}
	cfg, err := standInFor(wasmPluginType(e.GetTypedConfig()), strategy)
	if err != nil {
		return nil
	}
	return &corev3.TypedExtensionConfig{Name: e.Name, TypedConfig: cfg}
}

// withAttempt marks a re-pushed Wasm config with its attempt number in the
// module URL's query, which the module server ignores. It must differ from
// the config NACKed before: Envoy records a config it rejects as its
// latest, so the same config sent again is ACKed without a VM being made.
// A different config also gets a new version, so SotW (which parks a NACKed
// version) and delta (which does not resend a resource version) send it.
// Envoy caches code by sha256, so the URL change downloads nothing.
// swapping reports whether the group runs another module of plugin name
// than sha: only then does a cache-miss NACK keep the running filter
// serving while Envoy fetches the new module in the background.
func swapping(g *group, name, sha string) bool {
	if good, ok := g.lastGood[name].newest(func(string) bool { return true }); ok {
		return good.sha != sha
	}
	// A node that came with the plugin running (say, from another
	// replica) swaps the module it runs for any other: Envoy must confirm
	// the new one. An update that is not a swap would have it fetch the
	// module in the background, with no word of whether it ever runs.
	held, ok := g.held[name]
	return ok && held != sha
}

// heldUnknown is a held plugin whose module this server cannot tell.
const heldUnknown = "?"

// heldReport is what a node reports holding on its first request of
// extension configs on a stream: the state-of-the-world version and the
// names it subscribes to, or (delta) each resource's version.
type heldReport struct {
	version   string
	resources map[string]string
}

// noteHeld records the plugins a node already runs when it comes to this
// server, and with which module when the version it reports is one this
// server built: for plugins this server has not seen run in the group,
// a different module is then sent as a swap. The group is rebuilt at
// once, before the request's watch is answered.
func (s *Server) noteHeld(group string, h heldReport) {
	s.mu.Lock()
	g := s.groups[group]
	if g != nil && g.versions == nil {
		// Nothing built yet to read the report against: the first build
		// does (the server has no Input yet, say, just after a restart).
		if len(g.pendingHeld) < maxPendingHeld {
			g.pendingHeld = append(g.pendingHeld, h)
		}
		s.mu.Unlock()
		return
	}
	changed := false
	for name, rv := range h.resources {
		plugin, ok := EcdsPluginName(name)
		if g == nil || !ok || len(g.lastGood[plugin]) > 0 || !s.inputHasLocked(plugin) {
			continue
		}
		sha := heldUnknown
		if e, ok := g.ecds[h.version][plugin]; ok && h.version != "" {
			sha = e.sha
		} else if e, ok := g.current[plugin]; ok && rv != "" && resourceHash(e.ext) == rv {
			sha = e.sha
		}
		changed = setHeld(g, plugin, sha) || changed
	}
	s.mu.Unlock()
	if !changed {
		return
	}
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	in := s.input
	s.mu.Unlock()
	if in != nil {
		s.rebuild(group, *in, s.shared)
	}
}

// maxPendingHeld bounds the reports a group keeps before its first build.
const maxPendingHeld = 64

// setHeld records that a node of g runs plugin's module sha; nodes that
// report different modules make it unknown. It reports a change.
func setHeld(g *group, plugin, sha string) bool {
	cur, known := g.held[plugin]
	switch {
	case !known:
		g.held[plugin] = sha
	case cur == sha || cur == heldUnknown:
		return false
	default:
		g.held[plugin] = heldUnknown
	}
	return true
}

// inputHasLocked reports whether plugin is in the current Input (any
// plugin while there is none yet).
func (s *Server) inputHasLocked(plugin string) bool {
	if s.input == nil {
		return true
	}
	_, ok := s.input.Modules[plugin]
	return ok
}

// pruneHeldLocked forgets held plugins that left in.
func (s *Server) pruneHeldLocked(in Input) {
	for _, g := range s.groups {
		for plugin := range g.held {
			if _, ok := in.Modules[plugin]; !ok {
				delete(g.held, plugin)
			}
		}
	}
}

// resolvePendingHeldLocked reads the reports of nodes that came before the
// group's first build against that build (its extension config version
// and configs): a node reporting what the build holds runs its modules; a
// node reporting anything else runs modules this server cannot tell, which
// makes every module sent to the group a swap. It returns whether that
// changes the build: a swap where the build sent a first module, or a
// rollout the group may now take.
func (s *Server) resolvePendingHeldLocked(g *group, in Input, version string, entries map[string]ecdsEntry) bool {
	if len(g.pendingHeld) == 0 {
		return false
	}
	redo := false
	for _, h := range g.pendingHeld {
		for name, rv := range h.resources {
			plugin, ok := EcdsPluginName(name)
			if _, inInput := in.Modules[plugin]; !ok || !inInput || len(g.lastGood[plugin]) > 0 {
				continue
			}
			e, built := entries[plugin]
			sha := heldUnknown
			if built && ((h.version != "" && h.version == version) || (rv != "" && resourceHash(e.ext) == rv)) {
				sha = e.sha
			}
			if setHeld(g, plugin, sha) {
				redo = redo || (built && e.sha != "" && g.held[plugin] != e.sha) || in.waitsForRollout(g.bucket, plugin)
			}
		}
	}
	g.pendingHeld = nil
	return redo
}

// resourceHash is a resource's version as go-control-plane's delta
// protocol reports it.
func resourceHash(r *corev3.TypedExtensionConfig) string {
	b, err := cache.MarshalResource(r)
	if err != nil {
		return ""
	}
	return cache.HashResource(b)
}

// goodConfigs are a plugin's configs that nodes ACKed, newest first, one
// per module, so that when the newest module is refused elsewhere in the
// label set, the one before it is still known.
type goodConfigs []ecdsEntry

const goodKept = 4

// add records e as the newest.
func (l goodConfigs) add(e ecdsEntry) goodConfigs {
	out := make(goodConfigs, 0, min(len(l)+1, goodKept))
	out = append(out, e)
	for _, o := range l {
		if o.sha != e.sha && len(out) < goodKept {
			out = append(out, o)
		}
	}
	return out
}

// newest is the newest config whose module usable allows.
func (l goodConfigs) newest(usable func(sha string) bool) (ecdsEntry, bool) {
	for _, e := range l {
		if usable(e.sha) {
			return e, true
		}
	}
	return ecdsEntry{}, false
}

// withNackOnMiss sets the Wasm config's nack_on_code_cache_miss.
func withNackOnMiss(e *corev3.TypedExtensionConfig, nack bool) *corev3.TypedExtensionConfig {
	pc := wasmPluginConfig(e.GetTypedConfig())
	if pc.GetVmConfig() == nil || pc.GetVmConfig().GetNackOnCodeCacheMiss() == nack {
		return e
	}
	pc.GetVmConfig().NackOnCodeCacheMiss = nack
	cfg, err := repackWasm(e.GetTypedConfig(), pc)
	if err != nil {
		return e
	}
	return &corev3.TypedExtensionConfig{Name: e.Name, TypedConfig: cfg}
}

func withAttempt(e *corev3.TypedExtensionConfig, attempt int) *corev3.TypedExtensionConfig {
	pc := wasmPluginConfig(e.GetTypedConfig())
	uri := pc.GetVmConfig().GetCode().GetRemote().GetHttpUri()
	if uri == nil {
		return e
	}
	base, _, _ := strings.Cut(uri.Uri, "?")
	uri.Uri = fmt.Sprintf("%s?attempt=%d", base, attempt)
	cfg, err := repackWasm(e.GetTypedConfig(), pc)
	if err != nil {
		return e
	}
	return &corev3.TypedExtensionConfig{Name: e.Name, TypedConfig: cfg}
}

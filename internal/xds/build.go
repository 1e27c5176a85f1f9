package xds

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Building a group's snapshot from an Input: translation shared by the
// groups of a label set, the plan of refusals applied, the snapshot set in
// the delivery cache when anything changed.

// errInconsistent marks a snapshot whose resources reference each other
// wrongly (e.g. a listener naming a route configuration that is missing).
var errInconsistent = errors.New("inconsistent snapshot")

// Update rebuilds the snapshot of every group with a connected node from
// in; idle groups give theirs back and are built on their next node. A
// group whose resources hash the same as before is left alone, so Envoys
// are sent nothing.
func (s *Server) Update(in Input) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	s.input = &in
	s.dropIdleGroupsLocked(s.clock.Now())
	s.liftRefusalsLocked(in)
	s.pruneHeldLocked(in)
	s.releaseIdleLocked()
	keys := s.activeGroupsLocked()
	s.mu.Unlock()
	s.shared = newBuildCache()
	s.batch = make([]pendingSet, 0, len(keys))
	defer func() { s.batch = nil }() // even if a build panics
	for _, key := range keys {
		s.rebuild(key, in, s.shared)
	}
	s.setBatch()
	s.mu.Lock()
	s.ready = true
	s.forgetFamiliesLocked()
	s.pruneInternedLocked()
	s.mu.Unlock()
}

// Problems returns the translation problems of every known group, without
// duplicates, sorted by source.
func (s *Server) Problems() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[Problem]bool{}
	var out []Problem
	for _, g := range s.groups {
		for _, p := range g.problems {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Message, b.Message))
	})
	return out
}

// ensureGroup builds a group's first snapshot when a node with a new label
// set connects after an Input is known. It runs in the stream's request
// callback, before the watch is created, so the node is answered at once.
func (s *Server) ensureGroup(key string) {
	s.mu.Lock()
	g := s.groups[key]
	pending := g != nil && g.versions == nil && s.input != nil
	s.mu.Unlock()
	if !pending {
		return
	}
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	in := s.input
	pending = s.groups[key] == g && g.versions == nil
	if pending && s.idleHeld {
		// Before a group is added, those gone idle give back theirs: the
		// snapshots kept stay one per group in use, however many label
		// sets come and go between Updates. Only when one went idle since
		// the last release: a fleet connecting adds thousands of groups.
		s.releaseIdleLocked()
	}
	s.mu.Unlock()
	if pending {
		s.rebuild(key, *in, s.shared)
	}
}

// buildCache holds the work of one Input done so far, shared by groups:
// the groups of a label set that see the same rollout modules share one
// translation, and those whose refusals come out the same share one
// snapshot (its hashing and, for delta, its version map).
type buildCache struct {
	translations map[string]*translation
	built        map[string]*built
}

func newBuildCache() *buildCache {
	return &buildCache{translations: map[string]*translation{}, built: map[string]*built{}}
}

// retain forgets the work done for label sets not in labelsKeys.
func (c *buildCache) retain(labelsKeys map[string]bool) {
	for k := range c.translations {
		if !labelsKeys[labelsOfBuildKey(k)] {
			delete(c.translations, k)
		}
	}
	for k := range c.built {
		if !labelsKeys[labelsOfBuildKey(k)] {
			delete(c.built, k)
		}
	}
}

// labelsOfBuildKey is the label set of a translation or built key (the
// label set, then NUL-separated variants).
func labelsOfBuildKey(k string) string {
	labels, _, _ := strings.Cut(k, "\x00")
	return labels
}

// translation is one Translate's result and the plugin module of each of
// its extension configs.
type translation struct {
	res      *Resources
	problems []Problem
	entries  []ecdsEntry // per res.Extensions; sha "" when not a plugin's module
	names    []string    // per res.Extensions: the plugin, "" when none
}

// built is a translation with one refusal plan applied, as a snapshot.
type built struct {
	exts     []*corev3.TypedExtensionConfig
	ecds     map[string]ecdsEntry
	snap     *servedSnapshot
	versions typeVersions
	err      error
}

// rebuild translates in for one group and sets its snapshot if anything
// changed. An invalid snapshot is logged and counted and the previous one
// keeps serving. shared, if not nil, holds the work done for the same
// Input so far. The caller holds buildMu.
func (s *Server) rebuild(key string, in Input, shared *buildCache) {
	orig := in
	start := s.clock.Now()
	s.mu.Lock()
	g := s.groups[key]
	s.mu.Unlock()
	if g == nil {
		return
	}
	if shared == nil {
		shared = newBuildCache()
	}
	s.mu.Lock()
	forgetUnsubscribedLocked(g)
	// A group's nodes take a rollout module only as a swap from a module
	// they run (ECDS): Envoy confirms a swap before applying it, so a VM
	// that fails halts the rollout instead of failing traffic.
	ran := func(plugin string) bool {
		_, held := g.held[plugin]
		return len(g.lastGood[plugin]) > 0 || held || in.Delivery != DeliveryECDS
	}
	in, variant := in.forBucket(g.bucket, ran)
	tk := g.labelsKey + "\x00" + variant
	g.family = tk
	groups := len(s.groups)
	s.mu.Unlock()
	if len(shared.built) > maxBuilt(groups) {
		shared.built = map[string]*built{} // re-pushes piled up: keep memory bounded
	}
	tr := shared.translations[tk]
	if tr == nil {
		tr = s.translateShared(in, g.labels)
		shared.translations[tk] = tr
	}
	s.mu.Lock()
	plan, planKey := s.planRefusalsLocked(g, tr)
	s.mu.Unlock()
	bk := tk + "\x00" + planKey
	b := shared.built[bk]
	if b == nil {
		res := *tr.res
		res.Extensions = s.internExts(applyPlan(tr.res.Extensions, plan))
		b = &built{exts: res.Extensions, ecds: ecdsEntries(res.Extensions)}
		b.snap, b.versions, b.err = buildSnapshot(&res)
		shared.built[bk] = b
	}
	problems, snap, versions, err := tr.problems, b.snap, b.versions, b.err
	s.mu.Lock()
	if err == nil && s.resolvePendingHeldLocked(g, orig, versions[resource.ExtensionConfigType], b.ecds) {
		// A node that came first runs a module this build would send it
		// as a first module: build again, sending it as a swap.
		s.mu.Unlock()
		s.rebuild(key, orig, shared)
		return
	}
	g.problems = problems
	if err == nil {
		g.current, g.filterless = b.ecds, len(b.exts) == 0
	}
	old, oldSetAt := g.versions, g.setAt
	changed := err == nil && !maps.Equal(old, versions)
	if changed {
		// Recorded before SetSnapshot, which may answer watches at once, so
		// that a quick ACK already finds the version for convergence.
		g.versions, g.setAt = versions, setTimes(old, oldSetAt, versions, start)
		if g.nodes == 0 {
			s.idleHeld = true // a re-push built a group its nodes left
		}
		g.recordECDS(versions[resource.ExtensionConfigType], b.ecds)
	}
	s.mu.Unlock()
	defer func() { s.metrics.buildDuration.Observe(s.clock.Since(start).Seconds()) }()
	if err != nil {
		s.snapshotFailed(key, reasonFor(err), err)
		return
	}
	if !changed {
		return
	}
	set := pendingSet{key: key, g: g, snap: snap, versions: versions, problems: len(problems)}
	if s.batch != nil {
		s.batch = append(s.batch, set)
		return
	}
	s.setSnapshots([]pendingSet{set}, slog.LevelInfo)
}

// pendingSet is a built snapshot to be set in the delivery cache.
type pendingSet struct {
	key      string
	g        *group
	snap     *servedSnapshot
	versions typeVersions
	problems int
}

// setBatch sets the snapshots an Update built, once every group is built.
// Setting one answers its group's watches and wakes their streams: set as
// each group is built, the builds of the groups after it would share the
// CPU with thousands of streams sending and their nodes' ACKs, and the
// last groups of a large fleet would get their change last by far. For
// the same reason the batch takes the cache's lock and the server's once
// each, not once per group behind the woken streams. The caller holds
// buildMu.
func (s *Server) setBatch() {
	batch := s.batch
	s.batch = nil
	if set := s.setSnapshots(batch, slog.LevelDebug); set > 0 {
		s.log.Info("snapshots set", "groups", set)
	}
}

// setSnapshots sets built snapshots in the delivery cache, which answers
// their groups' waiting watches, logs each at level and returns how many
// groups are still there. The caller holds buildMu.
func (s *Server) setSnapshots(sets []pendingSet, level slog.Level) int {
	if len(sets) == 0 {
		return 0
	}
	s.cache.setAll(sets)
	kept := s.keepUndropped(sets)
	if s.log.Enabled(context.Background(), level) {
		for _, p := range kept {
			s.log.Log(context.Background(), level, "snapshot set", "group", p.key, "versions", versionAttrs(p.versions),
				"problems", p.problems)
		}
	}
	return len(kept)
}

// keepUndropped returns the sets whose group is still there. A group
// dropped meanwhile (it went idle and expired) leaves no snapshot behind.
// Every build holds buildMu, so the snapshot under a key now is the one
// just set, even if a node made a new group of the key since.
func (s *Server) keepUndropped(sets []pendingSet) []pendingSet {
	kept := sets[:0:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range sets {
		if s.groups[p.key] != p.g {
			s.cache.clear(p.key)
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

func (s *Server) snapshotFailed(key, reason string, err error) {
	s.metrics.snapshotErrors.WithLabelValues(reason).Inc()
	s.log.Error("snapshot not set, previous one keeps serving", "group", key, "reason", reason, "error", err)
}

func reasonFor(err error) string {
	if errors.Is(err, errInconsistent) {
		return reasonInconsistent
	}
	return reasonInvalid
}

// maxBuilt bounds the snapshots kept for reuse between Updates.
func maxBuilt(groups int) int { return 2*groups + 64 }

// forgetFamiliesLocked drops the last good configs of translations no
// group uses any more.
func (s *Server) forgetFamiliesLocked() {
	used := make(map[string]bool, len(s.groups))
	for _, g := range s.groups {
		used[g.family] = true
	}
	for f := range s.familyGood {
		if !used[f] {
			delete(s.familyGood, f)
		}
	}
}

// translateShared translates in for labels and notes the plugin module of
// each extension config.
func (s *Server) translateShared(in Input, labels map[string]string) *translation {
	res, problems := s.translate(in, labels)
	if res == nil {
		res = &Resources{}
	}
	tr := &translation{res: res, problems: problems, entries: make([]ecdsEntry, len(res.Extensions)),
		names: make([]string, len(res.Extensions))}
	for i, e := range res.Extensions {
		if name, ok := EcdsPluginName(e.Name); ok {
			tr.names[i], tr.entries[i] = name, ecdsEntries([]*corev3.TypedExtensionConfig{e})[name]
		}
	}
	return tr
}

// setTimes keeps the set time of types whose version did not change.
func setTimes(old typeVersions, oldAt map[string]time.Time, now typeVersions, at time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(now))
	for typeURL, v := range now {
		if old[typeURL] == v {
			out[typeURL] = oldAt[typeURL]
		} else {
			out[typeURL] = at
		}
	}
	return out
}

func versionAttrs(v typeVersions) slog.Value {
	attrs := make([]slog.Attr, 0, len(v))
	for _, typeURL := range servedTypes {
		attrs = append(attrs, slog.String(typeLabel(typeURL), v[typeURL]))
	}
	return slog.GroupValue(attrs...)
}

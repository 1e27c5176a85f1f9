package controlplane

import (
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// rollouts is where a rollout is decided. It owns every decision about
// rollouts, and nothing else does:
//
//   - arming: which plugins' rollouts are in force (Active, ECDS delivery,
//     their module resolved, the plugin runnable) — see arm;
//   - choosing: which rollout buckets a rollout reaches, a stable hash of
//     the node's bucket and the plugin name against the percent in force
//     (the spec's, or the step reached; see progress.go);
//   - halting: on a chosen node's refusal of the module (moduleRefused, an
//     event from the engine), a failing analysis (judged) or a peer
//     replica's halt (sharedhalts.go);
//   - re-arming: an edit of url, percent or steps, or a moved tag.
//
// At every push the controller asks it for the Input's rollouts and it
// hands the engine, per plugin, the rollout module and the buckets whose
// nodes take it (xds.Rollout). The engine knows nothing of percents or
// hashes of plugin names; it reports the modules nodes refused, and never
// is asked which node was chosen: rollouts answers that from its own
// choice.
//
// Its methods lock its own mutex; the controller may call them holding
// its own (never the other way round).
type rollouts struct {
	delivery xds.Delivery
	replica  string // this replica's id, in the halts it decides
	log      *slog.Logger
	redact   func(string) string // removes secrets from halt reasons shared with peers
	changed  func()              // asks the controller for a push

	mu        sync.Mutex
	state     *catalog.State
	modules   map[string]rolloutModule   // plugin → its rollout module as the last arming saw it
	pushed    map[string]rolloutPush     // plugin → its rollout as handed to the engine last
	halted    map[string]halt            // plugin → its rollout, halted
	halts     map[string]int             // plugin → rollouts halted since start
	peerHalts map[string][]sharedHalt    // plugin → halts peers apply (see setPeerHalts)
	progress  map[string]rolloutProgress // plugin → its rollout's step and last analysis
}

// rolloutModule is what the controller knows of a rollout's module: its
// resolution, as rollouts needs it to arm the rollout and report it.
type rolloutModule struct {
	module  *xds.Module // the module in force for the rollout (the last good one); nil: none
	url     string      // the reference module was resolved from
	current bool        // module was resolved for the reference in force now
	pending bool        // a resolution of another module runs (or none ever did)
	err     string      // why the last resolution failed
}

// rolloutPush is a rollout as last handed to the engine: for which arming,
// with which module, against which main module, reaching which buckets.
type rolloutPush struct {
	spec, sha string
	mainSHA   string
	buckets   xds.Buckets
}

// Why a rollout halted, in HaltReport.Cause.
const (
	HaltRefused  = "refused"  // a chosen node refused the rollout module
	HaltAnalysis = "analysis" // the rollout failed its analysis
)

// halt is a rollout stopped because a chosen node refused its module, or
// because it failed its analysis (Node is then the chosen node named).
type halt struct {
	Spec   string    `json:"spec"` // rolloutSpec when it halted
	SHA256 string    `json:"sha256"`
	Node   string    `json:"node"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Replica is the replica whose node refused the module.
	Replica string `json:"replica,omitempty"`
	// Cause is HaltAnalysis for a halt by analysis, "" for a refusal (as
	// halts recorded before analyses existed have it).
	Cause string `json:"cause,omitempty"`
}

// cause is the halt's HaltReport.Cause.
func (h halt) cause() string {
	if h.Cause == HaltAnalysis {
		return HaltAnalysis
	}
	return HaltRefused
}

type rolloutsOptions struct {
	Delivery  xds.Delivery
	ReplicaID string
	Logger    *slog.Logger
	Redact    func(string) string
	Changed   func()
}

func newRollouts(opts rolloutsOptions) *rollouts {
	return &rollouts{delivery: opts.Delivery, replica: opts.ReplicaID, log: opts.Logger.With("component", "rollouts"),
		redact: opts.Redact, changed: opts.Changed,
		modules: map[string]rolloutModule{}, pushed: map[string]rolloutPush{}, halted: map[string]halt{},
		halts: map[string]int{}, peerHalts: map[string][]sharedHalt{}, progress: map[string]rolloutProgress{}}
}

// RolloutChosen reports whether a rollout of plugin at percent reaches the
// node with id nodeID. The choice is a stable hash of node id and plugin
// name: the node's bucket (xds.NodeBucket) shifted by the plugin's, so
// that each plugin's rollout reaches its own part of the fleet, and
// raising percent only adds nodes. It is part of the contract between
// replicas and across upgrades: a changed choice would move nodes between
// modules.
func RolloutChosen(nodeID, plugin string, percent int) bool {
	return chosenIn(xds.NodeBucket(nodeID), pluginShift(plugin), percent)
}

// chosenBuckets is every bucket a rollout of plugin at percent reaches.
func chosenBuckets(plugin string, percent int) xds.Buckets {
	var b xds.Buckets
	shift := pluginShift(plugin)
	for bucket := range xds.RolloutBuckets {
		if chosenIn(bucket, shift, percent) {
			b.Add(bucket)
		}
	}
	return b
}

func chosenIn(bucket, shift, percent int) bool {
	return (bucket+shift)%xds.RolloutBuckets < percent
}

// pluginShift is the plugin name's bucket: hashed as xds.NodeBucket hashes
// node ids (the first 8 bytes of its sha256, big-endian, mod 100).
func pluginShift(plugin string) int {
	sum := sha256.Sum256([]byte(plugin))
	return int(binary.BigEndian.Uint64(sum[:8]) % xds.RolloutBuckets)
}

// rolloutSpec identifies one arming of a rollout: an edit of its url,
// percent or steps re-arms a halted rollout.
func rolloutSpec(r *catalog.Rollout) string {
	return r.URL + " " + strconv.Itoa(r.Percent) + stepsSpec(r.Steps)
}

// wants reports whether p's rollout is to be applied, so that its module
// is to be resolved: it reaches some nodes with another module than the
// plugin's, and delivery lets a refusal halt it.
func (r *rollouts) wants(p catalog.Plugin) bool {
	return p.Rollout.Active(p.URL) && r.delivery != xds.DeliveryLDS
}

// setState takes the desired state the controller now works from: a
// refusal is judged against the rollouts as they are now specified.
func (r *rollouts) setState(st *catalog.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = st
}

// restore takes the halts and the steps reached recorded before a
// restart: a restart is not an edit of the rollout, and a stepped rollout
// resumes from its step for the same arming and module.
func (r *rollouts) restore(halted map[string]halt, steps map[string]savedStep) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.Copy(r.halted, halted)
	for name, st := range steps {
		if st.Step > 0 {
			r.progress[name] = rolloutProgress{key: st.Key, step: st.Step}
		}
	}
}

// haltedNow is a copy of the halts in force, to record.
func (r *rollouts) haltedNow() map[string]halt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.halted)
}

// arm is the Input's rollouts for state st, whose plugins' modules are
// modules and whose rollout modules are resolved as resolved says: every
// wanted rollout with a module for its url (kept while a re-resolution
// runs or failed, as the plugin's own module is), reaching the buckets its
// percent in force chooses. It re-arms halted rollouts whose url, percent
// or steps changed, or whose url now names another module (a moved tag),
// adopts the halts peers apply, and forgets what it kept of plugins that
// left the state.
func (r *rollouts) arm(st *catalog.State, modules map[string]xds.PluginModule,
	resolved map[string]rolloutModule) map[string]xds.Rollout {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state, r.modules = st, resolved
	out := map[string]xds.Rollout{}
	live := map[string]bool{}
	pushed := map[string]rolloutPush{}
	for _, p := range st.Plugins {
		if !r.wants(p) {
			continue
		}
		live[p.Name] = true
		spec := rolloutSpec(p.Rollout)
		rm := resolved[p.Name]
		usable := rm.module != nil && rm.url == p.Rollout.URL
		if h, ok := r.halted[p.Name]; ok {
			moved := usable && rm.current && rm.module.SHA256 != h.SHA256
			if h.Spec == spec && !moved {
				continue
			}
			delete(r.halted, p.Name)
			r.log.Info("rollout re-armed", "plugin", p.Name, "url", p.Rollout.URL, "percent", p.Rollout.Percent,
				"new_module", moved)
		}
		if !usable {
			continue // pending or failed: nodes keep what they run
		}
		if r.adoptPeerHaltLocked(p, spec, rm.module.SHA256) {
			continue
		}
		pm := modules[p.Name]
		if len(p.SecretRefs) > 0 && pm.Config == "" {
			continue // the plugin cannot run as specified at all
		}
		buckets := chosenBuckets(p.Name, r.percentLocked(p))
		out[p.Name] = xds.Rollout{Module: rm.module, Buckets: buckets}
		push := rolloutPush{spec: spec, sha: rm.module.SHA256, buckets: buckets}
		if pm.Module != nil {
			push.mainSHA = pm.Module.SHA256
		}
		pushed[p.Name] = push
	}
	for name := range r.halted {
		if !live[name] {
			delete(r.halted, name)
		}
	}
	for name := range r.halts {
		if _, ok := modules[name]; !ok { // every plugin of the state has an entry
			delete(r.halts, name)
		}
	}
	for name := range r.progress {
		if _, ok := modules[name]; !ok {
			delete(r.progress, name)
		}
	}
	r.pushed = pushed
	return out
}

// moduleRefused hears of a node that refused a plugin's module (an event
// from the engine). A refused rollout module halts the rollout: chosen
// nodes go back to the plugin's url at the next push. It runs on an ADS
// stream and does not block.
func (r *rollouts) moduleRefused(node, plugin, sha, reason string) {
	r.haltRollout(node, plugin, sha, reason, "")
}

// haltRollout halts plugin's rollout of module sha, refused by node (cause
// "") or failed by its analysis (HaltAnalysis, naming a chosen node), when
// that is the rollout as it is now.
func (r *rollouts) haltRollout(node, plugin, sha, reason, cause string) {
	r.mu.Lock()
	p := r.pluginLocked(plugin)
	// Only the module handed to the engine for the rollout as it is now
	// counts, and only from a node whose bucket that rollout reached: a
	// late refusal of an earlier rollout module, or of the plugin's own
	// module elsewhere, halts nothing.
	if p == nil || !p.Rollout.Active(p.URL) {
		r.mu.Unlock()
		return
	}
	spec := rolloutSpec(p.Rollout)
	pushed, ok := r.pushed[plugin]
	if !ok || pushed.spec != spec || pushed.sha != sha || !pushed.buckets.Has(xds.NodeBucket(node)) {
		r.mu.Unlock()
		return
	}
	if h, ok := r.halted[plugin]; ok && h.Spec == spec && h.SHA256 == sha {
		r.mu.Unlock()
		return
	}
	r.halted[plugin] = halt{Spec: spec, SHA256: sha, Node: node, Reason: reason, At: time.Now(), Replica: r.replica,
		Cause: cause}
	r.halts[plugin]++
	url, pct := p.Rollout.URL, r.percentLocked(*p)
	r.mu.Unlock()
	msg := "rollout halted: a chosen node refused its module; chosen nodes go back to the plugin's url"
	if cause == HaltAnalysis {
		msg = "rollout halted by its analysis; chosen nodes go back to the plugin's url"
	}
	r.log.Warn(msg, "plugin", plugin, "url", url, "percent", pct, "sha256", sha, "node", node, "reason", reason)
	r.changed()
}

// pushedSHAs is, per plugin, the rollout module of the last push.
func (r *rollouts) pushedSHAs() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.pushed))
	for name, p := range r.pushed {
		out[name] = p.sha
	}
	return out
}

// pluginLocked is the current state's plugin of that name, nil if none.
func (r *rollouts) pluginLocked(name string) *catalog.Plugin {
	if r.state == nil {
		return nil
	}
	for i := range r.state.Plugins {
		if r.state.Plugins[i].Name == name {
			return &r.state.Plugins[i]
		}
	}
	return nil
}

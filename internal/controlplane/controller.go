package controlplane

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// moduleSource is what the controller needs from the fetcher.
type moduleSource interface {
	Resolve(ctx context.Context, req fetcher.Request) (fetcher.Module, error)
	Cached(req fetcher.Request) (fetcher.Module, bool)
	CachedModule(sha256Hex string) (fetcher.Module, bool)
	SetInUse(sha256Hexes []string)
}

// snapshotSink is what the controller needs from the xDS server.
type snapshotSink interface {
	Update(in xds.Input)
}

// controllerOptions configures a controller.
type controllerOptions struct {
	Logger    *slog.Logger // nil discards
	Modules   moduleSource
	Server    snapshotSink
	Advertise string // module server base URL, no trailing slash
	ModuleTLS xds.ModuleTLS
	Delivery  xds.Delivery
	// SecretRoots confines secretRefs files to these absolute directories
	// (symlinks resolved); none: any readable file.
	SecretRoots []string
	// PerRegistry bounds concurrent module resolutions against one registry
	// host (or http host, or local files), so that a slow registry never
	// starves the others; 0 means 4.
	PerRegistry int
	// InUseGrace keeps a module servable this long after the last config
	// referencing it was replaced, for Envoys still applying that config;
	// 0 means 10 minutes.
	InUseGrace time.Duration
	// Resync is how often Always plugins are re-resolved and failed ones
	// retried, at wall-clock multiples of it (see nextResync); 0 means
	// never.
	Resync time.Duration
	// Settle is how long a finished resolution waits for others still
	// running before it is pushed, so that modules pulled together reach
	// Envoys in one update; 0 means 2s. Edits never wait.
	Settle time.Duration
	// StateFile records, per plugin, the module in force, so that a restart
	// serves what was served before even when registries are down; "" keeps
	// nothing.
	StateFile string
	// ReplicaID names this replica in the halts it shares with peers.
	ReplicaID string
}

// controller turns desired states into xDS updates. Its loop owns all the
// waiting: a new desired state is taken at once (the catalog never blocks
// on it), each plugin's module is resolved independently, and every change
// pushes at once what is known. A plugin whose module is pending keeps what
// Envoys run; it is never turned into a failure while it waits.
type controller struct {
	opts   controllerOptions
	log    *slog.Logger
	kick   chan struct{} // the desired state changed
	pulled chan struct{} // a resolution finished
	early  chan struct{} // resync now (see resyncSoon)
	pulls  sync.WaitGroup

	mu          sync.Mutex
	state       *catalog.State
	res         map[string]*resolution // by plugin name
	advertised  map[string]time.Time   // module sha256 → last time it was part of a pushed Input
	established map[string]bool        // listeners Envoys run
	sems        map[string]chan struct{}
	seq         uint64
	inForce     map[string]inForce   // as last written to StateFile
	savedHalts  map[string]halt      // rollout halts as last written to StateFile
	savedSteps  map[string]savedStep // rollout steps reached as last written to StateFile
	secrets     *secretStore
	firstState  time.Time // when the first desired state arrived
	lastResync  time.Time // last resync run or asked for early

	// rollouts decides every rollout: the controller resolves rollout
	// modules and hands it the state and resolutions at each push.
	rollouts *rollouts
}

// resolution is one plugin's module state.
type resolution struct {
	key       string          // URL, pin, secret and key fingerprint the current attempt is for
	module    *fetcher.Module // module in force: the last good one, kept when a later attempt fails
	moduleKey string          // the key module was resolved for; "" when restored from StateFile
	err       string          // why the last attempt failed; empty if it did not
	inflight  uint64          // sequence number of the running attempt; 0 when idle
	done      bool            // an attempt for key has finished
	since     time.Time       // when the running attempt started
}

// pending reports whether the plugin waits for a module other than the one
// in force.
func (r *resolution) pending() bool {
	return r.inflight != 0 && (r.module == nil || r.moduleKey != r.key)
}

// pullJob is one resolution to run.
type pullJob struct {
	plugin string
	key    string
	req    fetcher.Request
	seq    uint64
}

func newController(opts controllerOptions) *controller {
	opts.PerRegistry = cmp.Or(opts.PerRegistry, 4)
	opts.InUseGrace = cmp.Or(opts.InUseGrace, 10*time.Minute)
	opts.Settle = cmp.Or(opts.Settle, 2*time.Second)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &controller{
		opts: opts, log: log.With("component", "controller"),
		kick: make(chan struct{}, 1), pulled: make(chan struct{}, 1), early: make(chan struct{}, 1),
		res: map[string]*resolution{}, advertised: map[string]time.Time{},
		established: map[string]bool{}, sems: map[string]chan struct{}{}, inForce: map[string]inForce{},
		savedHalts: map[string]halt{}, savedSteps: map[string]savedStep{},
		secrets: newSecretStore(log.With("component", "secrets"), opts.SecretRoots),
	}
	c.rollouts = newRollouts(rolloutsOptions{Delivery: opts.Delivery, ReplicaID: opts.ReplicaID, Logger: log,
		Redact: c.secrets.redact, Changed: c.trigger})
	c.restore()
	return c
}

// onChange takes a new desired state and returns at once; the controller's
// loop resolves and pushes it. Only the latest state matters.
func (c *controller) onChange(st *catalog.State) {
	c.mu.Lock()
	if c.state == nil {
		c.firstState = time.Now()
	}
	c.state = st
	c.rollouts.setState(st)
	keep := make(map[string]bool, len(st.Plugins))
	for _, p := range st.Plugins {
		keep[p.Name] = p.HasModule()
		if c.rollouts.wants(p) {
			keep[rolloutKey(p.Name)] = true
		}
	}
	for name := range c.res {
		if !keep[name] {
			delete(c.res, name)
		}
	}
	c.mu.Unlock()
	c.trigger()
}

// run pushes whenever something changed and resyncs at every wall-clock
// multiple of Resync (and early when asked), until ctx is done; it returns
// once every pull it started has stopped.
func (c *controller) run(ctx context.Context) {
	defer c.pulls.Wait()
	c.pulls.Go(func() { c.secrets.run(ctx, c.trigger) })
	var tick <-chan time.Time
	var resync *time.Timer
	if c.opts.Resync > 0 {
		resync = time.NewTimer(nextResync(time.Now(), c.opts.Resync))
		defer resync.Stop()
		tick = resync.C
	}
	settle := time.NewTimer(0)
	<-settle.C
	settling := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
			c.step(ctx, false)
		case <-tick:
			resync.Reset(nextResync(time.Now(), c.opts.Resync))
			c.resynced()
			c.step(ctx, true)
		case <-c.early:
			c.step(ctx, true)
		case <-c.pulled:
			// Modules that arrive together go out together: each module
			// set Envoy sees is one listener (or filter) update, and an
			// update that lands while Envoy still downloads a module of the
			// previous one fails that filter in Envoy 1.40.
			if c.inflight() == 0 {
				settle.Stop()
				settling = false
				c.step(ctx, false)
			} else if !settling {
				settle.Reset(c.opts.Settle)
				settling = true
			}
		case <-settle.C:
			settling = false
			c.step(ctx, false)
		}
	}
}

// inflight counts the resolutions running.
func (c *controller) inflight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.res {
		if r.inflight != 0 {
			n++
		}
	}
	return n
}

// step starts the resolutions the state needs and pushes what is known.
func (c *controller) step(ctx context.Context, resync bool) {
	c.mu.Lock()
	if c.state == nil {
		c.mu.Unlock()
		return
	}
	jobs := c.jobsLocked(resync)
	c.mu.Unlock()
	c.start(ctx, jobs)
	c.push()
}

// jobsLocked lists the resolutions the current state needs: plugins (and
// rollouts) whose reference changed or that were never resolved and, on
// resync, Always ones and ones whose last attempt failed.
func (c *controller) jobsLocked(resync bool) []pullJob {
	var jobs []pullJob
	now := time.Now()
	for _, p := range c.state.Plugins {
		if !p.HasModule() {
			continue // Lua: nothing to fetch
		}
		req := fetcher.Request{URL: p.URL, SHA256: p.SHA256, Always: p.PullPolicy == catalog.PullAlways,
			PullSecret: p.PullSecret, VerificationKey: p.VerificationKey}
		if j, ok := c.dueLocked(p.Name, req, resync, now); ok {
			jobs = append(jobs, j)
		}
		if j, ok := c.rolloutJobLocked(p, resync, now); ok {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// dueLocked returns the job resolving req for the resolution named name,
// when one is due.
func (c *controller) dueLocked(name string, req fetcher.Request, resync bool, now time.Time) (pullJob, bool) {
	key := strings.Join([]string{req.URL, req.SHA256, req.PullSecret, req.VerificationKey}, "\x00")
	r := c.res[name]
	if r == nil {
		r = &resolution{}
		c.res[name] = r
	}
	due := r.key != key || (!r.done && r.inflight == 0) ||
		(resync && r.inflight == 0 && (req.Always || r.err != ""))
	if !due {
		return pullJob{}, false
	}
	c.seq++
	r.key, r.inflight, r.done, r.since = key, c.seq, false, now
	return pullJob{plugin: name, key: key, seq: c.seq, req: req}, true
}

// start answers what it can from the cache at once and pulls the rest in
// the background; an Always plugin takes its cached module now and is
// re-resolved in the background.
func (c *controller) start(ctx context.Context, jobs []pullJob) {
	for _, j := range jobs {
		if m, ok := c.opts.Modules.Cached(j.req); ok {
			c.record(j, m, !j.req.Always)
			if !j.req.Always {
				continue
			}
		}
		sem := c.semaphore(j.req.URL)
		c.pulls.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			m, err := c.opts.Modules.Resolve(ctx, j.req)
			if ctx.Err() != nil {
				return // shutting down: the outcome is not a verdict on the module
			}
			c.finish(j, m, err)
		})
	}
}

// record takes a cache answer for a job; final ends the attempt.
func (c *controller) record(j pullJob, m fetcher.Module, final bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.res[j.plugin]
	if r == nil || r.inflight != j.seq {
		return
	}
	r.module, r.moduleKey, r.err = &m, j.key, ""
	if final {
		r.inflight, r.done = 0, true
	}
}

// semaphore returns the pull slots of the registry (or host) a URL names.
func (c *controller) semaphore(rawURL string) chan struct{} {
	host := "file"
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		host = strings.ToLower(u.Host)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sem := c.sems[host]
	if sem == nil {
		sem = make(chan struct{}, c.opts.PerRegistry)
		c.sems[host] = sem
	}
	return sem
}

// finish records a resolution's outcome unless a newer attempt for the
// plugin superseded it, and wakes the loop to push.
func (c *controller) finish(j pullJob, m fetcher.Module, err error) {
	c.mu.Lock()
	r := c.res[j.plugin]
	if r == nil || r.inflight != j.seq {
		c.mu.Unlock()
		return
	}
	r.inflight, r.done = 0, true
	if err == nil || errors.Is(err, fetcher.ErrStale) {
		r.module, r.moduleKey = &m, j.key
	}
	r.err = ""
	if err != nil {
		r.err = err.Error()
	}
	kept := r.module != nil
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("module not resolved", "plugin", j.plugin, "url", j.req.URL, "kept_last_good", kept, "error", err)
	} else {
		c.log.Info("module resolved", "plugin", j.plugin, "url", j.req.URL, "sha256", m.SHA256)
	}
	select {
	case c.pulled <- struct{}{}:
	default: // the loop has yet to see an earlier one, and will see this too
	}
}

// moduleLost re-resolves the plugins served with a module the cache lost
// (it was corrupt on disk). Envoys that loaded it keep running it; until the
// pull brings it back, new downloads are told to retry.
func (c *controller) moduleLost(sha256Hex string) {
	c.mu.Lock()
	n := 0
	for _, r := range c.res {
		if r.module != nil && r.module.SHA256 == sha256Hex && r.inflight == 0 {
			r.key, r.done = "", false
			n++
		}
	}
	c.mu.Unlock()
	if n > 0 {
		c.log.Warn("cached module lost; pulling it again", "sha256", sha256Hex, "plugins", n)
		c.trigger()
	}
}

func (c *controller) trigger() {
	select {
	case c.kick <- struct{}{}:
	default: // a push is already pending and will see this change
	}
}

// push builds the Input from the current state and resolutions, declares
// its modules servable, then updates the xDS server: the module server must
// be able to serve every sha256 a pushed config names.
func (c *controller) push() {
	c.mu.Lock()
	if c.state == nil {
		c.mu.Unlock()
		return
	}
	in := xds.Input{State: c.state, Modules: map[string]xds.PluginModule{},
		ModuleServerURL: c.opts.Advertise, ModuleTLS: c.opts.ModuleTLS, Delivery: c.opts.Delivery, Established: maps.Clone(c.established)}
	now := time.Now()
	names := make(map[string]bool, len(c.state.Plugins))
	for _, p := range c.state.Plugins {
		names[p.Name] = true
		if p.HasModule() {
			in.Modules[p.Name] = c.withSecrets(p, c.pluginModuleLocked(p.Name, now))
		}
	}
	c.secrets.retain(names)
	in.Rollouts = c.rollouts.arm(c.state, in.Modules, c.rolloutModulesLocked())
	for _, r := range in.Rollouts {
		c.advertised[r.Module.SHA256] = now
	}
	c.establishLocked(in)
	inUse := c.inUseLocked(now)
	forced, halted, steps := c.inForceLocked(), c.rollouts.haltedNow(), c.rollouts.stepsNow()
	c.mu.Unlock()
	c.opts.Modules.SetInUse(inUse)
	c.opts.Server.Update(in)
	c.persist(forced, halted, steps)
}

func (c *controller) pluginModuleLocked(name string, now time.Time) xds.PluginModule {
	r := c.res[name]
	if r == nil {
		return xds.PluginModule{Pending: true}
	}
	pm := xds.PluginModule{Err: r.err, Pending: r.inflight != 0}
	if r.module != nil {
		pm.Module = &xds.Module{SHA256: r.module.SHA256, URL: fetcher.ModuleURL(c.opts.Advertise, r.module.SHA256)}
		c.advertised[r.module.SHA256] = now
	}
	return pm
}

// withSecrets fills p's secretRefs into pm.Config. A plugin whose secrets
// were never all readable cannot run as specified: it is unavailable (its
// fail strategy applies) until they are.
func (c *controller) withSecrets(p catalog.Plugin, pm xds.PluginModule) xds.PluginModule {
	if len(p.SecretRefs) == 0 {
		return pm
	}
	cfg, ok := c.secrets.config(p)
	if !ok {
		return xds.PluginModule{Err: "pluginConfig secrets cannot be read (see the spec errors)"}
	}
	pm.Config = cfg
	return pm
}

// establishLocked records the listeners Envoys now run: every listener of
// the state except those a fail-closed plugin with a pending first module
// may hold back (see xds.Input.Established). Listeners that left the state
// are forgotten, so one that comes back is new again.
func (c *controller) establishLocked(in xds.Input) {
	var held []catalog.Plugin
	for _, p := range c.state.Plugins {
		pm := in.Modules[p.Name]
		if pm.Module == nil && pm.Pending && p.FailStrategy != catalog.FailOpen {
			held = append(held, p)
		}
	}
	next := make(map[string]bool, len(c.state.Listeners))
	for _, l := range c.state.Listeners {
		mayHold := slices.ContainsFunc(held, func(p catalog.Plugin) bool {
			return len(p.Ports) == 0 || slices.Contains(p.Ports, l.Port)
		})
		if c.established[l.Name] || !mayHold {
			next[l.Name] = true
		}
	}
	c.established = next
}

// inUseLocked is every module advertised within the grace period, so that
// an Envoy still applying the previous config can download its modules.
func (c *controller) inUseLocked(now time.Time) []string {
	for sum, at := range c.advertised {
		if now.Sub(at) > c.opts.InUseGrace {
			delete(c.advertised, sum)
		}
	}
	return slices.Sorted(maps.Keys(c.advertised))
}

// currentState is the last desired state, nil before the first.
func (c *controller) currentState() *catalog.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

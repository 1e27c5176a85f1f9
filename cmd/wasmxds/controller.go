package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/fetcher"
	"github.com/wasmxds/wasmxds/xds"
)

// moduleSource is what the controller needs from the fetcher.
type moduleSource interface {
	Resolve(ctx context.Context, req fetcher.Request) (fetcher.Module, error)
	SetInUse(sha256Hexes []string)
}

// snapshotSink is what the controller needs from the xDS server.
type snapshotSink interface {
	Update(in xds.Input)
}

// controllerOptions configures a controller.
type controllerOptions struct {
	Logger    *slog.Logger
	Modules   moduleSource
	Server    snapshotSink
	Advertise string // module server base URL, no trailing slash
	Delivery  xds.Delivery
	// Parallel bounds concurrent module resolutions; 0 means 4.
	Parallel int
	// FirstWait is how long the first desired state waits for its modules
	// before it is pushed; later states wait Wait. Pulls still running then
	// push again when they finish. Zero values mean 30s and 2s.
	FirstWait, Wait time.Duration
	// InUseGrace keeps a module servable this long after the last config
	// referencing it was replaced, for Envoys still applying that config;
	// 0 means 10 minutes.
	InUseGrace time.Duration
}

// controller turns desired states into xDS updates: it resolves each
// plugin's module independently (one slow or failing pull never holds back
// the others), tells the fetcher what may be served, and pushes Inputs.
type controller struct {
	opts controllerOptions
	log  *slog.Logger
	sem  chan struct{}
	kick chan struct{}

	mu         sync.Mutex
	state      *catalog.State
	res        map[string]*resolution // by plugin name
	holding    int                    // onChange calls waiting for their pulls; completions do not push meanwhile
	advertised map[string]time.Time   // module sha256 → last time it was part of a pushed Input
	seq        uint64
	pushes     int
}

// resolution is one plugin's module state.
type resolution struct {
	key      string          // URL, pin and secret the current attempt is for
	module   *fetcher.Module // last good module, kept when a later attempt fails
	err      string          // why the last attempt failed; empty if it did not
	inflight uint64          // sequence number of the running attempt; 0 when idle
	done     bool            // an attempt for key has finished
}

// pullJob is one resolution to run.
type pullJob struct {
	plugin string
	key    string
	req    fetcher.Request
	seq    uint64
}

func newController(opts controllerOptions) *controller {
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.FirstWait <= 0 {
		opts.FirstWait = 30 * time.Second
	}
	if opts.Wait <= 0 {
		opts.Wait = 2 * time.Second
	}
	if opts.InUseGrace <= 0 {
		opts.InUseGrace = 10 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &controller{
		opts: opts, log: log.With("component", "controller"),
		sem: make(chan struct{}, opts.Parallel), kick: make(chan struct{}, 1),
		res: map[string]*resolution{}, advertised: map[string]time.Time{},
	}
}

// run pushes an Input whenever something changed, until ctx is done.
func (c *controller) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
			c.push()
		}
	}
}

// runResync re-resolves Always plugins, and retries failed ones, every
// interval until ctx is done.
func (c *controller) runResync(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.resync(ctx)
		}
	}
}

// resync starts the periodic re-resolutions; they push when they finish.
func (c *controller) resync(ctx context.Context) <-chan struct{} {
	c.mu.Lock()
	var jobs []pullJob
	if c.state != nil {
		jobs = c.jobsLocked(true)
	}
	c.mu.Unlock()
	return c.start(ctx, jobs)
}

// onChange takes a new desired state: it starts the pulls the state needs,
// waits briefly so that a quick pull lands in the same push, and pushes.
func (c *controller) onChange(ctx context.Context, st *catalog.State) {
	c.mu.Lock()
	first := c.state == nil
	c.state = st
	for name := range c.res {
		if !slices.ContainsFunc(st.Plugins, func(p catalog.Plugin) bool { return p.Name == name }) {
			delete(c.res, name)
		}
	}
	jobs := c.jobsLocked(false)
	c.holding++
	c.mu.Unlock()

	wait := c.opts.Wait
	if first {
		wait = c.opts.FirstWait
	}
	done := c.start(ctx, jobs)
	timer := time.NewTimer(wait)
	select {
	case <-done:
	case <-timer.C:
		c.log.Info("module pulls still running; pushing what is resolved", "pending", len(jobs))
	case <-ctx.Done():
	}
	timer.Stop()
	c.mu.Lock()
	c.holding--
	c.mu.Unlock()
	c.trigger()
}

// jobsLocked lists the resolutions the current state needs: plugins whose
// reference changed or that were never resolved and, on resync, Always
// plugins and plugins whose last attempt failed.
func (c *controller) jobsLocked(resync bool) []pullJob {
	var jobs []pullJob
	for _, p := range c.state.Plugins {
		key := strings.Join([]string{p.URL, p.SHA256, p.PullSecret}, "\x00")
		r := c.res[p.Name]
		if r == nil {
			r = &resolution{}
			c.res[p.Name] = r
		}
		always := p.PullPolicy == catalog.PullAlways
		due := r.key != key || (!r.done && r.inflight == 0) ||
			(resync && r.inflight == 0 && (always || r.err != ""))
		if !due {
			continue
		}
		c.seq++
		r.key, r.inflight, r.done = key, c.seq, false
		jobs = append(jobs, pullJob{plugin: p.Name, key: key, seq: c.seq, req: fetcher.Request{
			URL: p.URL, SHA256: p.SHA256, Always: always, PullSecret: p.PullSecret,
		}})
	}
	return jobs
}

// start runs jobs with bounded concurrency; the returned channel closes
// when all have finished.
func (c *controller) start(ctx context.Context, jobs []pullJob) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			select {
			case c.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-c.sem }()
			m, err := c.opts.Modules.Resolve(ctx, j.req)
			c.finish(j, m, err)
		})
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// finish records a resolution's outcome unless a newer attempt for the
// plugin superseded it, and pushes unless an onChange is about to.
func (c *controller) finish(j pullJob, m fetcher.Module, err error) {
	c.mu.Lock()
	r := c.res[j.plugin]
	if r == nil || r.inflight != j.seq {
		c.mu.Unlock()
		return
	}
	r.inflight, r.done = 0, true
	stale := errors.Is(err, fetcher.ErrStale)
	if err == nil || stale {
		r.module = &m
	}
	r.err = ""
	if err != nil {
		r.err = err.Error()
	}
	hold, kept := c.holding > 0, r.module != nil
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("module not resolved", "plugin", j.plugin, "url", j.req.URL, "kept_last_good", kept, "error", err)
	} else {
		c.log.Info("module resolved", "plugin", j.plugin, "url", j.req.URL, "sha256", m.SHA256)
	}
	if !hold {
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
		ModuleServerURL: c.opts.Advertise, Delivery: c.opts.Delivery}
	now := time.Now()
	for _, p := range c.state.Plugins {
		in.Modules[p.Name] = c.pluginModuleLocked(p.Name, now)
	}
	inUse := c.inUseLocked(now)
	c.pushes++
	c.mu.Unlock()
	c.opts.Modules.SetInUse(inUse)
	c.opts.Server.Update(in)
}

func (c *controller) pluginModuleLocked(name string, now time.Time) xds.PluginModule {
	r := c.res[name]
	if r == nil {
		return xds.PluginModule{Err: "module not resolved yet"}
	}
	pm := xds.PluginModule{Err: r.err}
	if r.module != nil {
		pm.Module = &xds.Module{SHA256: r.module.SHA256, URL: moduleURL(c.opts.Advertise, r.module.SHA256)}
		c.advertised[r.module.SHA256] = now
	} else if pm.Err == "" {
		pm.Err = "module not resolved yet"
	}
	return pm
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

func moduleURL(base, sum string) string {
	return strings.TrimRight(base, "/") + fetcher.ModulePathPrefix + sum
}

// pluginReports describes every plugin's module for /debug/status.
func (c *controller) pluginReports() []pluginReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		return []pluginReport{}
	}
	out := make([]pluginReport, 0, len(c.state.Plugins))
	for _, p := range c.state.Plugins {
		rep := pluginReport{Name: p.Name, Source: p.Source.String(), URL: p.URL, Phase: p.Phase.String(),
			Priority: p.Priority, FailStrategy: string(p.FailStrategy), PullPolicy: string(p.PullPolicy)}
		if r := c.res[p.Name]; r != nil {
			rep.Error = r.err
			if r.module != nil {
				rep.SHA256, rep.ManifestDigest = r.module.SHA256, r.module.ManifestDigest
			} else if r.err == "" {
				rep.Error = "module not resolved yet"
			}
		}
		out = append(out, rep)
	}
	return out
}

// currentState is the last desired state, nil before the first.
func (c *controller) currentState() *catalog.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

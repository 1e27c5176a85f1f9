package controlplane

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// StatusReport is the /debug/status document, read back by `wasmxds status`.
type StatusReport struct {
	Ready     bool   `json:"ready"`
	NotReady  string `json:"notReady,omitempty"` // why not ready
	ConfigDir string `json:"configDir"`
	// ConfigDirError says why the config directory cannot be read (it went
	// missing, say); the last good configuration keeps serving.
	ConfigDirError string               `json:"configDirError,omitempty"`
	SpecErrors     []string             `json:"specErrors"`   // "file:line: message"
	SpecWarnings   []string             `json:"specWarnings"` // "file:line: message"
	Listeners      int                  `json:"listeners"`
	Clusters       int                  `json:"clusters"`
	Plugins        []PluginReport       `json:"plugins"`
	Modules        []fetcher.ModuleInfo `json:"modules"`
	// ModuleProblems are cached modules found corrupt and quarantined.
	ModuleProblems []fetcher.Problem `json:"moduleProblems"`
	// CacheDegraded says why the module cache cannot be written; cached
	// modules keep being served meanwhile.
	CacheDegraded string `json:"cacheDegraded,omitempty"`
	// Replicas are this replica (state self) and its peers; Nodes are the
	// nodes of all of them, each with the replica holding its stream.
	Replicas []ReplicaReport  `json:"replicas"`
	Nodes    []xds.NodeStatus `json:"nodes"`
	// Refused are the latest nodes refused for claiming what their
	// identity is not granted (with client certificates), newest last.
	Refused  []xds.NodeDenial `json:"refused"`
	Problems []ProblemReport  `json:"problems"` // resources translation had to drop
}

// Plugin module states in PluginReport.State.
const (
	PluginReady   = "ready"   // served with the module its spec names
	PluginPending = "pending" // a resolution is under way; what Envoys run keeps running
	PluginFailed  = "failed"  // the latest resolution failed (a last good module may still serve)
)

// PluginReport is one plugin and the module it is served with.
type PluginReport struct {
	Name   string `json:"name"`
	Source string `json:"source"` // file:line
	// Kind is the spec's kind when it is not WasmPlugin.
	Kind string `json:"kind,omitempty"`
	// Lua marks a Lua plugin: inline code, no module (URL is empty), ready
	// as soon as it is in the desired state.
	Lua            bool       `json:"lua,omitempty"`
	URL            string     `json:"url"`
	Phase          string     `json:"phase"`
	Priority       int32      `json:"priority"`
	FailStrategy   string     `json:"failStrategy"`
	PullPolicy     string     `json:"pullPolicy"`
	State          string     `json:"state"`                  // ready, pending or failed
	PendingSince   *time.Time `json:"pendingSince,omitempty"` // when the running resolution started
	SHA256         string     `json:"sha256,omitempty"`       // the module served, possibly the last good one
	ManifestDigest string     `json:"manifestDigest,omitempty"`
	// VerificationKey is the fingerprint of the spec's verificationKey;
	// SignedBy is the key the served module's signature was verified with,
	// empty when it was not verified (say, restored from before a key was
	// set, pending re-verification).
	VerificationKey string `json:"verificationKey,omitempty"`
	SignedBy        string `json:"signedBy,omitempty"`
	Error           string `json:"error,omitempty"` // why the latest resolution failed
	// Rollout is the plugin's rollout, when its spec has one.
	Rollout *RolloutReport `json:"rollout,omitempty"`
	// Modules counts, per module, the connected nodes sent it, by state.
	Modules []ModuleNodes `json:"modules"`
}

// ModuleNodes is how many connected nodes were sent one module of a
// plugin, by delivery state.
type ModuleNodes struct {
	SHA256  string `json:"sha256"`
	Rollout bool   `json:"rollout,omitempty"` // the plugin's rollout module
	Running int    `json:"running"`
	Pending int    `json:"pending"`
	Failed  int    `json:"failed"`
}

// ProblemReport is a resource translation dropped.
type ProblemReport struct {
	Source  string `json:"source"` // file:line
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// pluginReports describes every plugin's module for /debug/status.
func (c *controller) pluginReports() []PluginReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		return []PluginReport{}
	}
	out := make([]PluginReport, 0, len(c.state.Plugins))
	for _, p := range c.state.Plugins {
		rep := PluginReport{Name: p.Name, Source: p.Source.String(), URL: p.URL, Phase: p.Phase.String(),
			Priority: p.Priority, FailStrategy: string(p.FailStrategy), PullPolicy: string(p.PullPolicy),
			VerificationKey: p.KeyFingerprint, State: PluginPending, Kind: p.Kind, Lua: !p.HasModule()}
		if rep.Lua {
			rep.State, rep.PullPolicy = PluginReady, ""
		}
		if r := c.res[p.Name]; r != nil && !rep.Lua {
			rep.Error = r.err
			if r.module != nil {
				rep.SHA256, rep.ManifestDigest, rep.SignedBy = r.module.SHA256, r.module.ManifestDigest, r.module.SignedBy
			}
			switch {
			case r.pending():
				since := r.since
				rep.PendingSince = &since
			case r.err != "":
				rep.State = PluginFailed
			default:
				rep.State = PluginReady
			}
		}
		rep.Rollout = c.rolloutReportLocked(p)
		rep.Modules = []ModuleNodes{}
		out = append(out, rep)
	}
	return out
}

// countModules fills each plugin's Modules from the nodes' plugin states.
func countModules(plugins []PluginReport, nodes []xds.NodeStatus) {
	for i := range plugins {
		p := &plugins[i]
		bySHA := map[string]*ModuleNodes{}
		var order []string
		for _, n := range nodes {
			if n.Unreachable {
				continue // what its replica last said; it may have moved
			}
			for _, ps := range n.Plugins {
				if ps.Name != p.Name || ps.SHA256 == "" {
					continue
				}
				m := bySHA[ps.SHA256]
				if m == nil {
					m = &ModuleNodes{SHA256: ps.SHA256, Rollout: p.Rollout != nil && p.Rollout.SHA256 == ps.SHA256 &&
						ps.SHA256 != p.SHA256}
					bySHA[ps.SHA256] = m
					order = append(order, ps.SHA256)
				}
				switch ps.State {
				case xds.PluginRunning:
					m.Running++
				case xds.PluginFailed:
					m.Failed++
				default:
					m.Pending++
				}
			}
		}
		slices.Sort(order)
		for _, sha := range order {
			p.Modules = append(p.Modules, *bySHA[sha])
		}
	}
}

// Status returns the status document.
func (cp *ControlPlane) Status() StatusReport {
	rep := StatusReport{
		Ready: cp.server.Ready(), ConfigDir: cp.opts.ConfigDir,
		SpecErrors: []string{}, SpecWarnings: []string{},
		Plugins: cp.ctrl.pluginReports(), Modules: cp.mods.Modules(),
		Refused: cp.server.NodeDenials(), Problems: []ProblemReport{},
	}
	if err := cp.notReady(); err != nil {
		rep.Ready, rep.NotReady = false, err.Error()
	}
	rep.Replicas, rep.Nodes = cp.fleet(cp.server.Status(), rep.Ready, time.Now())
	countModules(rep.Plugins, rep.Nodes)
	fillRuntime(rep.Nodes, cp.tel, cp.carriers, cp.ctrl.currentState())
	if err := cp.configDirErr(); err != nil {
		rep.ConfigDirError = err.Error()
	}
	if st := cp.ctrl.currentState(); st != nil {
		for _, e := range st.Errors {
			rep.SpecErrors = append(rep.SpecErrors, e.Error())
		}
		for _, e := range cp.ctrl.secrets.specErrors() {
			rep.SpecErrors = append(rep.SpecErrors, e.Error())
		}
		for _, e := range st.Warnings {
			rep.SpecWarnings = append(rep.SpecWarnings, e.Error())
		}
		rep.Listeners, rep.Clusters = len(st.Listeners), len(st.Clusters)
	}
	for _, p := range cp.server.Problems() {
		rep.Problems = append(rep.Problems, ProblemReport{Source: p.Source.String(), Kind: p.Kind, Name: p.Name, Message: p.Message})
	}
	if rep.Modules == nil {
		rep.Modules = []fetcher.ModuleInfo{}
	}
	if rep.Refused == nil {
		rep.Refused = []xds.NodeDenial{}
	}
	if rep.ModuleProblems = cp.mods.Problems(); rep.ModuleProblems == nil {
		rep.ModuleProblems = []fetcher.Problem{}
	}
	if err := cp.mods.Degraded(); err != nil {
		rep.CacheDegraded = err.Error()
	}
	return rep
}

// moduleHandler serves modules and nothing else: the module listener is
// the one Envoys reach, so nothing about the control plane is on it.
func (cp *ControlPlane) moduleHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/modules/", cp.mods.Handler())
	return mux
}

// adminHandler serves health, metrics, the status document, the status
// page (at / only: other paths stay 404) and, with Pprof, profiles. It
// listens on loopback unless told otherwise.
func (cp *ControlPlane) adminHandler(gatherer prometheus.Gatherer) http.Handler {
	log := cp.log.With("component", "admin")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := cp.notReady(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if cp.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, log, cp.Status())
	})
	mux.HandleFunc("GET /{$}", cp.statusPageHandler(log))
	mux.HandleFunc("GET "+peerStatePath, cp.peerHandler(log.With("component", "peers")))
	return mux
}

func writeJSON(w http.ResponseWriter, log *slog.Logger, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		log.Debug("writing status", "error", err)
	}
}

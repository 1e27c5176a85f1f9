package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmxds/wasmxds/fetcher"
	"github.com/wasmxds/wasmxds/xds"
)

// statusReport is the /debug/status document, read back by `wasmxds status`.
type statusReport struct {
	Ready        bool                 `json:"ready"`
	ConfigDir    string               `json:"configDir"`
	SpecErrors   []string             `json:"specErrors"`   // "file:line: message"
	SpecWarnings []string             `json:"specWarnings"` // "file:line: message"
	Listeners    int                  `json:"listeners"`
	Clusters     int                  `json:"clusters"`
	Plugins      []pluginReport       `json:"plugins"`
	Modules      []fetcher.ModuleInfo `json:"modules"`
	Nodes        []xds.NodeStatus     `json:"nodes"`
	Problems     []problemReport      `json:"problems"` // resources translation had to drop
}

// pluginReport is one plugin and the module it is served with.
type pluginReport struct {
	Name           string `json:"name"`
	Source         string `json:"source"` // file:line
	URL            string `json:"url"`
	Phase          string `json:"phase"`
	Priority       int32  `json:"priority"`
	FailStrategy   string `json:"failStrategy"`
	PullPolicy     string `json:"pullPolicy"`
	SHA256         string `json:"sha256,omitempty"` // the module served, possibly the last good one
	ManifestDigest string `json:"manifestDigest,omitempty"`
	Error          string `json:"error,omitempty"` // why the latest resolution failed
}

// problemReport is a resource translation dropped.
type problemReport struct {
	Source  string `json:"source"` // file:line
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// httpDeps are what the HTTP endpoints read.
type httpDeps struct {
	log        *slog.Logger
	configDir  string
	modules    *fetcher.Fetcher
	server     *xds.Server
	controller *controller
	gatherer   prometheus.Gatherer
	pprof      bool // serve /debug/pprof/ (off by default: profiles cost CPU and reveal internals)
}

// newHTTPHandler serves modules, health, metrics and the status document.
func newHTTPHandler(d httpDeps) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/modules/", d.modules.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.server.Ready() {
			http.Error(w, "no configuration built yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.gatherer, promhttp.HandlerOpts{}))
	if d.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d.report()); err != nil {
			d.log.Debug("writing status", "error", err)
		}
	})
	return mux
}

func (d httpDeps) report() statusReport {
	rep := statusReport{
		Ready: d.server.Ready(), ConfigDir: d.configDir,
		SpecErrors: []string{}, SpecWarnings: []string{},
		Plugins: d.controller.pluginReports(), Modules: d.modules.Modules(),
		Nodes: d.server.Status(), Problems: []problemReport{},
	}
	if st := d.controller.currentState(); st != nil {
		for _, e := range st.Errors {
			rep.SpecErrors = append(rep.SpecErrors, e.Error())
		}
		for _, e := range st.Warnings {
			rep.SpecWarnings = append(rep.SpecWarnings, e.Error())
		}
		rep.Listeners, rep.Clusters = len(st.Listeners), len(st.Clusters)
	}
	for _, p := range d.server.Problems() {
		rep.Problems = append(rep.Problems, problemReport{Source: p.Source.String(), Kind: p.Kind, Name: p.Name, Message: p.Message})
	}
	if rep.Modules == nil {
		rep.Modules = []fetcher.ModuleInfo{}
	}
	return rep
}

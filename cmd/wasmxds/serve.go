package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/fetcher"
	"github.com/wasmxds/wasmxds/internal/controlplane"
	"github.com/wasmxds/wasmxds/xds"
)

// serveConfig is everything `wasmxds serve` is configured with.
type serveConfig struct {
	configDir     string
	cacheDir      string
	xdsListen     string
	httpListen    string
	advertiseURL  string // "" = http://127.0.0.1:<http port>
	delivery      string
	resync        time.Duration
	gcInterval    time.Duration
	insecure      []string
	dockerConfig  string
	maxModuleSize int64
	logLevel      string
	logFormat     string
	debounce      time.Duration
	pprof         bool
}

func newServeCmd() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve Envoy configuration over ADS and Wasm modules over HTTP",
		Long: `Watch --config-dir for Listener, Cluster and WasmPlugin specs, pull each plugin's
module into --cache-dir, and serve the resulting configuration to every Envoy
that connects to --xds-listen (ADS, state-of-the-world or delta). Envoys download
modules from --advertise-url, which must reach --http-listen. The HTTP listener
also serves /healthz, /readyz, /metrics and /debug/status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), cfg.logLevel, cfg.logFormat)
			if err != nil {
				return err
			}
			return runServe(commandContext(cmd), cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.configDir, "config-dir", "./configs", "directory of spec files (watched)")
	f.StringVar(&cfg.cacheDir, "cache-dir", defaultCacheDir(), "module cache directory")
	f.StringVar(&cfg.xdsListen, "xds-listen", ":18000", "ADS gRPC listen address")
	f.StringVar(&cfg.httpListen, "http-listen", ":18080", "HTTP listen address (modules, health, metrics, status)")
	f.StringVar(&cfg.advertiseURL, "advertise-url", "", "module server URL Envoys download from (default http://127.0.0.1:<http port>)")
	f.StringVar(&cfg.delivery, "filter-delivery", string(xds.DeliveryECDS), "how Wasm filter config reaches Envoy: ecds (TypedExtensionConfig, no listener drain on config edits) or lds (inline)")
	f.DurationVar(&cfg.resync, "resync", 5*time.Minute, "how often Always plugins are re-resolved and failed pulls retried")
	f.DurationVar(&cfg.gcInterval, "gc-interval", time.Hour, "how often unused cached modules are garbage-collected")
	f.StringSliceVar(&cfg.insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (repeatable; localhost always is)")
	f.StringVar(&cfg.dockerConfig, "docker-config", "", "docker config.json with registry credentials (default $DOCKER_CONFIG or ~/.docker)")
	f.Int64Var(&cfg.maxModuleSize, "max-module-size", fetcher.DefaultMaxModuleSize, "largest module accepted, in bytes")
	f.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	// The default is the catalog's: a few times the longest gap measured
	// inside one editor save, which every edit pays once.
	f.DurationVar(&cfg.debounce, "debounce", catalog.DefaultDebounce,
		"how long the config directory must be quiet before a change applies: a save is several "+
			"filesystem events, usually within a few ms; raise it if a slow writer's half-saved file shows up")
	f.BoolVar(&cfg.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP listener")
	return cmd
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// runServe serves until ctx ends (SIGINT or SIGTERM), then shuts down
// gracefully.
func runServe(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	if cfg.debounce <= 0 {
		return fmt.Errorf("--debounce %v: want a positive duration", cfg.debounce)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cp, err := controlplane.New(controlplane.Options{
		ConfigDir: cfg.configDir, CacheDir: cfg.cacheDir, XDSListen: cfg.xdsListen, HTTPListen: cfg.httpListen,
		AdvertiseURL: cfg.advertiseURL, Delivery: xds.Delivery(cfg.delivery), Resync: cfg.resync,
		GCInterval: cfg.gcInterval, Debounce: cfg.debounce, InsecureRegistries: cfg.insecure,
		DockerConfig: cfg.dockerConfig, MaxModuleSize: cfg.maxModuleSize, Pprof: cfg.pprof,
		ReleaseMemory: true, Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("serving", "component", "serve", "xds", cp.XDSAddr(), "http", cp.HTTPAddr(),
		"advertise", cp.AdvertiseURL(), "config_dir", cfg.configDir, "delivery", cfg.delivery)
	if err := cp.Run(ctx); err != nil {
		log.Error("stopped", "component", "serve", "error", err)
		return err
	}
	log.Info("stopped", "component", "serve")
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/fetcher"
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
	// firstWait and wait override the controller's waits for pulls (tests).
	firstWait, wait time.Duration
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

// runServe serves until SIGINT or SIGTERM, then shuts down gracefully.
func runServe(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	inst, err := startServe(ctx, cfg, log)
	if err != nil {
		return err
	}
	log.Info("serving", "component", "serve", "xds", inst.xdsAddr, "http", inst.httpAddr,
		"advertise", inst.advertise, "config_dir", cfg.configDir, "delivery", cfg.delivery)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "component", "serve")
	case err = <-inst.errc:
		log.Error("server failed, shutting down", "component", "serve", "error", err)
	}
	inst.shutdown(10 * time.Second)
	return err
}

// serveInstance is a running serve: listeners bound, goroutines started.
type serveInstance struct {
	xdsAddr, httpAddr, advertise string
	log                          *slog.Logger
	cancel                       context.CancelFunc
	server                       *xds.Server
	grpc                         *grpc.Server
	http                         *http.Server
	errc                         chan error // the first failure of a serving goroutine
}

// startServe binds the listeners, starts every component and returns once
// the config directory has been read for the first time.
func startServe(ctx context.Context, cfg serveConfig, log *slog.Logger) (*serveInstance, error) {
	delivery := xds.Delivery(cfg.delivery)
	if delivery != xds.DeliveryLDS && delivery != xds.DeliveryECDS {
		return nil, fmt.Errorf("--filter-delivery %q: want lds or ecds", cfg.delivery)
	}
	if cfg.debounce <= 0 {
		return nil, fmt.Errorf("--debounce %v: want a positive duration", cfg.debounce)
	}
	xl, hl, err := listenBoth(cfg.xdsListen, cfg.httpListen)
	if err != nil {
		return nil, err
	}
	inst := &serveInstance{xdsAddr: xl.Addr().String(), httpAddr: hl.Addr().String(), log: log,
		errc: make(chan error, 3)}
	inst.advertise, err = advertiseURL(cfg.advertiseURL, hl.Addr())
	if err != nil {
		_, _ = xl.Close(), hl.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mods, err := fetcher.New(fetcher.Options{CacheDir: cfg.cacheDir, MaxModuleSize: cfg.maxModuleSize,
		InsecureRegistries: cfg.insecure, DockerConfig: cfg.dockerConfig, Logger: log, Registerer: reg})
	if err != nil {
		_, _ = xl.Close(), hl.Close()
		return nil, err
	}
	inst.server = xds.NewServer(xds.ServerOptions{Logger: log, Registerer: reg})
	ctrl := newController(controllerOptions{Logger: log, Modules: mods, Server: inst.server,
		Advertise: inst.advertise, Delivery: delivery, FirstWait: cfg.firstWait, Wait: cfg.wait})
	runCtx, cancel := context.WithCancel(ctx)
	inst.cancel = cancel
	inst.serveGRPC(xl)
	inst.serveHTTP(hl, newHTTPHandler(httpDeps{log: log.With("component", "http"), configDir: cfg.configDir,
		modules: mods, server: inst.server, controller: ctrl, gatherer: reg, pprof: cfg.pprof}))
	go ctrl.run(runCtx)
	go ctrl.runResync(runCtx, cfg.resync)
	go mods.RunGC(runCtx, cfg.gcInterval)
	if err := inst.watch(runCtx, cfg.configDir, cfg.debounce, reg, ctrl); err != nil {
		inst.shutdown(time.Second)
		return nil, err
	}
	return inst, nil
}

func listenBoth(xdsAddr, httpAddr string) (net.Listener, net.Listener, error) {
	xl, err := net.Listen("tcp", xdsAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("--xds-listen: %w", err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		_ = xl.Close()
		return nil, nil, fmt.Errorf("--http-listen: %w", err)
	}
	return xl, hl, nil
}

// advertiseURL defaults to the HTTP listener's port on loopback, which
// suits Envoys on the same host.
func advertiseURL(flag string, addr net.Addr) (string, error) {
	if flag == "" {
		return fmt.Sprintf("http://127.0.0.1:%d", addr.(*net.TCPAddr).Port), nil
	}
	if !strings.HasPrefix(flag, "http://") && !strings.HasPrefix(flag, "https://") {
		return "", fmt.Errorf("--advertise-url %q: want http(s)://host:port", flag)
	}
	return strings.TrimRight(flag, "/"), nil
}

func (s *serveInstance) serveGRPC(l net.Listener) {
	s.grpc = grpc.NewServer(xds.GRPCServerOptions()...)
	s.server.Register(s.grpc)
	go func() {
		if err := s.grpc.Serve(l); err != nil {
			s.errc <- fmt.Errorf("xds server: %w", err)
		}
	}()
}

func (s *serveInstance) serveHTTP(l net.Listener, h http.Handler) {
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("http server: %w", err)
		}
	}()
}

// watch runs catalog.Watch and waits for its first state, so that an
// unreadable config directory fails the start.
func (s *serveInstance) watch(ctx context.Context, dir string, debounce time.Duration, reg prometheus.Registerer, ctrl *controller) error {
	first := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		seen := false
		werr <- catalog.Watch(ctx, dir, catalog.WatchOptions{Debounce: debounce, Logger: s.log, Registerer: reg}, func(st *catalog.State) {
			if !seen {
				seen = true
				close(first)
			}
			ctrl.onChange(ctx, st)
		})
	}()
	select {
	case <-first:
		go func() {
			if err := <-werr; err != nil {
				s.errc <- fmt.Errorf("config watch: %w", err)
			}
		}()
		return nil
	case err := <-werr:
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("--config-dir %s: %w", dir, err)
	}
}

// shutdown stops accepting work, ends ADS streams (they never end by
// themselves, so GracefulStop would otherwise wait for the timeout) and
// drains HTTP requests, giving up after timeout.
func (s *serveInstance) shutdown(timeout time.Duration) {
	s.cancel()
	s.server.Close()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("http shutdown", "component", "serve", "error", err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
	}
}

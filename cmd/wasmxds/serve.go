package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/controlplane"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// serveConfig is everything `wasmxds serve` is configured with.
type serveConfig struct {
	configDir      string
	cacheDir       string
	xdsListen      string
	httpListen     string
	adminListen    string
	advertiseURL   string // "" = http(s)://127.0.0.1:<http port>
	tlsCert        string
	tlsKey         string
	clientCA       string
	envoySDSDir    string
	allowLinkLocal bool
	secretRoots    []string
	maxStreams     int
	maxLabelSets   int
	groupIdle      time.Duration
	fileRoots      []string
	delivery       string
	resync         time.Duration
	gcInterval     time.Duration
	insecure       []string
	dockerConfig   string
	maxModuleSize  int64
	logLevel       string
	logFormat      string
	debounce       time.Duration
	pprof          bool
	peers          []string
	replicaID      string
}

func newServeCmd() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve Envoy configuration over ADS and Wasm modules over HTTP",
		Long: `Watch --config-dir for spec files (Listener, Cluster, WasmPlugin, TrafficExtension,
NodeAccess, and wasme, ASM and EnvoyFilter manifests; see docs/spec.md), pull each
plugin's module into --cache-dir, and serve the resulting configuration to every
Envoy that connects to --xds-listen (ADS, state-of-the-world or delta). Envoys
download modules from --advertise-url, which must reach --http-listen; that
listener serves /modules/sha256/<hex> only, and only modules in use. --admin-listen
(loopback by default) serves the status page (/), /healthz, /readyz (503 with the
reason until the first configuration is built and every plugin's first resolution
has finished, and while the config directory is missing), /metrics, /debug/status
and, with --pprof, /debug/pprof/.

With --peer, replicas behind one address act as one: each polls its peers'
admin listeners for the rollout halts and refused modules they apply and the
nodes they hold, so that a halt decided on any replica applies on all, and
status shows the whole fleet from any replica. The admin listener must then be
reachable by the peers (e.g. --admin-listen 0.0.0.0:18081).

With --tls-cert-file and --tls-key-file, the xDS and module listeners speak TLS;
with --client-ca-file they also require client certificates signed by that CA,
and a node is then the identity in its certificate. The files are reloaded when
they change.`,
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
	f.StringVar(&cfg.httpListen, "http-listen", ":18080", "module server listen address (serves /modules/ only)")
	f.StringVar(&cfg.adminListen, "admin-listen", "127.0.0.1:18081", "admin listen address: health, readiness, metrics, status, profiles")
	f.StringVar(&cfg.tlsCert, "tls-cert-file", "", "PEM certificate for TLS on the xDS and module listeners (reloaded on change; a bad rotation keeps the old pair)")
	f.StringVar(&cfg.tlsKey, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.BoolVar(&cfg.allowLinkLocal, "allow-link-local-fetch", false, "let module fetches reach link-local and cloud metadata "+
		"addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200), refused by default")
	f.StringArrayVar(&cfg.fileRoots, "allow-file-root", nil, "confine file:// module URLs to this directory (repeatable; default: any readable file)")
	f.IntVar(&cfg.maxStreams, "max-streams-per-source", xds.DefaultMaxStreamsPerSource, "most ADS streams one source IP address may hold open "+
		"at once; more are refused with RESOURCE_EXHAUSTED (0: no bound; raise it for many Envoys behind one address)")
	f.IntVar(&cfg.maxLabelSets, "max-label-sets-per-source", xds.DefaultMaxLabelSetsPerSource, "most label sets nodes without a client "+
		"certificate from one address may bring into being (each costs a translation); a node with a new one past that is refused (negative: no cap; 0: the default)")
	f.DurationVar(&cfg.groupIdle, "group-idle-timeout", xds.DefaultGroupIdleTimeout, "how long the server keeps what it knows of "+
		"a node group (label set and rollout bucket) after its last node left: what its nodes ran and refused, so that a node "+
		"coming back is sent nothing new")
	f.StringArrayVar(&cfg.secretRoots, "allow-secret-root", nil, "confine secretRefs files to this directory, symlinks resolved; "+
		"a file outside every root is a spec error (repeatable; default: any readable file)")
	f.StringVar(&cfg.envoySDSDir, "envoy-tls-sds-dir", "", "directory, as Envoys see it, of the SDS files `wasmxds bootstrap --tls-sds-dir` wrote: "+
		"the module cluster then reloads rotated certificates too (default: the bootstrap's static secrets)")
	f.StringVar(&cfg.clientCA, "client-ca-file", "", "PEM CA bundle: require and verify client certificates signed by it on the xDS and module listeners")
	f.StringVar(&cfg.advertiseURL, "advertise-url", "", "module server URL Envoys download from (default http://127.0.0.1:<port of --http-listen>, https with --tls-cert-file)")
	f.StringVar(&cfg.delivery, "filter-delivery", string(xds.DeliveryECDS), "how Wasm filter config reaches Envoy: ecds (TypedExtensionConfig, no listener drain on config edits) or lds (inline)")
	f.DurationVar(&cfg.resync, "resync", 5*time.Minute, "how often Always plugins are re-resolved and failed pulls retried, at wall-clock multiples of it so that replicas resync together (0: the default)")
	f.DurationVar(&cfg.gcInterval, "gc-interval", time.Hour, "how often unused cached modules are garbage-collected (0: the default)")
	f.StringSliceVar(&cfg.insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (repeatable; localhost, 127.0.0.1 and ::1 always are)")
	f.StringVar(&cfg.dockerConfig, "docker-config", "", "docker config.json file with registry credentials (default $DOCKER_CONFIG/config.json, else ~/.docker/config.json)")
	f.Int64Var(&cfg.maxModuleSize, "max-module-size", fetcher.DefaultMaxModuleSize, "largest module accepted, in bytes (0: the default)")
	f.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	// The default is the catalog's: a few times the longest gap measured
	// inside one editor save, which every edit pays once.
	f.DurationVar(&cfg.debounce, "debounce", catalog.DefaultDebounce,
		"how long the config directory must be quiet before a change applies: a save is several "+
			"filesystem events, usually within a few ms; raise it if a slow writer's half-saved file shows up")
	f.StringArrayVar(&cfg.peers, "peer", nil, "another replica's admin address (host:port), or dns:NAME:PORT for every A/AAAA "+
		"record of NAME, resolved every 10 s (a headless Service); replicas share rollout halts, refused modules and their "+
		"nodes (repeatable; over mTLS with --client-ca-file, else peers trust their network)")
	f.StringVar(&cfg.replicaID, "replica-id", "", "this replica's name to its peers and in status (default: the host name)")
	f.BoolVar(&cfg.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the admin listener (--admin-listen)")
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
		AdminListen: cfg.adminListen, TLSCertFile: cfg.tlsCert, TLSKeyFile: cfg.tlsKey, ClientCAFile: cfg.clientCA,
		EnvoyTLSSDSDir: cfg.envoySDSDir, AllowLinkLocal: cfg.allowLinkLocal, AllowFileRoots: cfg.fileRoots,
		AllowSecretRoots: cfg.secretRoots, MaxStreamsPerSource: cfg.maxStreams,
		MaxLabelSetsPerSource: cfg.maxLabelSets,
		GroupIdleTimeout:      cfg.groupIdle,
		AdvertiseURL:          cfg.advertiseURL, Delivery: xds.Delivery(cfg.delivery), Resync: cfg.resync,
		GCInterval: cfg.gcInterval, Debounce: cfg.debounce, InsecureRegistries: cfg.insecure,
		DockerConfig: cfg.dockerConfig, MaxModuleSize: cfg.maxModuleSize, Pprof: cfg.pprof,
		ReleaseMemory: true, Logger: log, Peers: cfg.peers, ReplicaID: cfg.replicaID,
	})
	if err != nil {
		return err
	}
	log.Info("serving", "component", "serve", "xds", cp.XDSAddr(), "modules", cp.HTTPAddr(), "admin", cp.AdminAddr(),
		"replica", cp.ReplicaID(), "peers", cfg.peers,
		"advertise", cp.AdvertiseURL(), "config_dir", cfg.configDir, "delivery", cfg.delivery,
		"tls", cfg.tlsCert != "", "client_certificates", cfg.clientCA != "")
	if cfg.clientCA == "" && !loopbackOnly(cp.XDSAddr()) {
		log.Warn("xDS listens beyond loopback without client certificates: any client that reaches it may claim "+
			"any node labels and receive their configuration; set --tls-cert-file, --tls-key-file and --client-ca-file",
			"component", "serve", "xds", cp.XDSAddr())
	}
	if err := cp.Run(ctx); err != nil {
		log.Error("stopped", "component", "serve", "error", err)
		return err
	}
	log.Info("stopped", "component", "serve")
	return nil
}

// loopbackOnly reports whether a listener's address is a loopback one.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Package controlplane is the wasmxds runtime: it wires the catalog (spec
// files), the fetcher (modules) and the xds server (ADS) into one control
// plane whose Run owns every goroutine it starts. `wasmxds serve`, the
// tests and the benchmarks all run this same runtime.
package controlplane

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/utils/clock"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/regularfile"
	"github.com/wasmxds/wasmxds/internal/telemetry"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// Defaults for zero Options fields.
const (
	DefaultResync          = 5 * time.Minute
	DefaultGCInterval      = time.Hour
	DefaultShutdownTimeout = 10 * time.Second
)

// Options configure a ControlPlane. ConfigDir and CacheDir are required.
type Options struct {
	ConfigDir string // spec files, watched
	CacheDir  string // module cache
	// XDSListen, HTTPListen (modules) and AdminListen (health, metrics,
	// status, profiles) are listen addresses ("127.0.0.1:0" picks a port;
	// see XDSAddr, HTTPAddr and AdminAddr). AdminListen "" = 127.0.0.1:0.
	XDSListen, HTTPListen, AdminListen string
	// TLSCertFile and TLSKeyFile turn on TLS for the xDS and module
	// listeners; ClientCAFile then requires and verifies client certificates
	// signed by it. The files are reloaded when they change.
	TLSCertFile, TLSKeyFile, ClientCAFile string
	// EnvoyTLSSDSDir is the directory, as Envoys see it, holding the SDS
	// files `wasmxds bootstrap --tls-sds-dir` wrote; "" = the bootstrap's
	// static secrets. The module cluster refers to those secrets.
	EnvoyTLSSDSDir string
	// AdvertiseURL is the module server URL Envoys download from;
	// "" = http://127.0.0.1:<HTTP port>.
	AdvertiseURL string
	// Delivery is how Wasm filter config reaches Envoy; "" = ECDS.
	Delivery xds.Delivery
	// Resync re-resolves Always plugins and retries failed pulls this
	// often; 0 = DefaultResync.
	Resync time.Duration
	// GCInterval is how often unused cached modules are collected;
	// 0 = DefaultGCInterval.
	GCInterval time.Duration
	// Debounce is the config directory's quiet period; 0 = the catalog's.
	Debounce           time.Duration
	InsecureRegistries []string
	DockerConfig       string
	MaxModuleSize      int64 // 0 = fetcher.DefaultMaxModuleSize
	// AllowLinkLocal lets module fetches reach link-local and cloud
	// metadata addresses, which are refused by default.
	AllowLinkLocal bool
	// AllowFileRoots, when set, confines file:// module URLs to these
	// directories.
	AllowFileRoots []string
	// AllowSecretRoots, when set, confines secretRefs files to these
	// directories, judged after resolving symlinks; a file outside them is
	// a spec error of its plugin.
	AllowSecretRoots []string
	// MaxStreamsPerSource bounds the ADS streams one source address holds
	// at once (0: no bound; the CLI's default is
	// xds.DefaultMaxStreamsPerSource).
	MaxStreamsPerSource int
	// MaxLabelSetsPerSource caps the label sets nodes without a client
	// certificate from one address may bring into being (0:
	// xds.DefaultMaxLabelSetsPerSource; negative: no cap).
	MaxLabelSetsPerSource int
	// GroupIdleTimeout is how long a node group whose last node left is
	// kept; 0 = xds.DefaultGroupIdleTimeout.
	GroupIdleTimeout time.Duration
	// Peers are the other replicas' admin addresses (host:port), or
	// dns:NAME:PORT for every A and AAAA record of NAME, resolved again
	// every 10 s. Replicas share rollout halts, refused modules and their
	// nodes with their peers (see docs/replicas.md).
	Peers []string
	// ReplicaID names this replica to its peers and in status; "" = the
	// host name.
	ReplicaID string
	// PeerInterval is how often each peer is asked for its state;
	// 0 = DefaultPeerInterval.
	PeerInterval time.Duration
	// PeerUnreachable is how long a peer may go unheard before it is
	// called unreachable; 0 = DefaultPeerUnreachable.
	PeerUnreachable time.Duration
	// peerResolver looks up dns: peers; nil = net.DefaultResolver (tests
	// answer with addresses of their own).
	peerResolver ipResolver
	// Pprof serves Go profiles under /debug/pprof/.
	Pprof bool
	// ReleaseMemory returns freed memory to the OS once the open ADS
	// streams fall to half their peak (at least 100): Go returns memory only
	// after a GC cycle, which an idle server may not run for minutes. It is
	// process-wide, so the program, not this package, decides.
	ReleaseMemory bool
	// ShutdownTimeout bounds draining on shutdown; 0 = DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry receives every metric; nil = a new registry with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// TelemetryMaxNodes bounds the nodes whose reported metrics are kept
	// (0: telemetry.DefaultMaxNodes); only nodes with an ADS stream open
	// here are kept anyway.
	TelemetryMaxNodes int
	// Clock drives rollout analysis, telemetry expiry and the delivery
	// engine's timers (see xds.ServerOptions.Clock); nil is the real clock.
	// Tests replay intervals with a fake one.
	Clock clock.WithTickerAndDelayedExecution
}

// ControlPlane is a configured wasmxds runtime with its listeners bound.
type ControlPlane struct {
	opts      Options
	log       *slog.Logger
	xl, hl    net.Listener
	al        net.Listener // admin
	tls       *tlsReloader // nil without TLS
	advertise string
	reg       *prometheus.Registry
	mods      *fetcher.Fetcher
	server    *xds.Server
	downloads downloadShare // served here, for peers
	ctrl      *controller
	tel       *telemetry.Store
	telSvc    *telemetry.Service
	carriers  *carriers
	analyzer  *analyzer
	grpc      *grpc.Server
	http      *http.Server // modules
	admin     *http.Server

	replicaID string
	instance  string         // random per process: peers recognise themselves by it
	peers     *peerSet       // nil without Peers
	peerTLS   *peerTLS       // TLS between peers, when client certificates are required
	sniff     *sniffListener // the admin listener, plain HTTP and TLS, with peerTLS

	// grants is the NodeAccess of the newest state, nil before the first;
	// set (with client certificates required) before the controller sees
	// that state.
	grants atomic.Pointer[[]catalog.NodeAccess]

	watching     chan struct{} // closed once the config directory was read
	watchingOnce sync.Once

	healthMu sync.Mutex
	dirErr   error // the config directory went missing or unreadable; the last good state serves
}

// New validates opts, binds the listeners and opens the module cache.
// Nothing runs until Run.
func New(opts Options) (*ControlPlane, error) {
	opts.Delivery = cmp.Or(opts.Delivery, xds.DeliveryECDS)
	opts.Resync = cmp.Or(opts.Resync, DefaultResync)
	opts.GCInterval = cmp.Or(opts.GCInterval, DefaultGCInterval)
	opts.Debounce = cmp.Or(opts.Debounce, catalog.DefaultDebounce)
	opts.ShutdownTimeout = cmp.Or(opts.ShutdownTimeout, DefaultShutdownTimeout)
	opts.PeerInterval = cmp.Or(opts.PeerInterval, DefaultPeerInterval)
	opts.PeerUnreachable = cmp.Or(opts.PeerUnreachable, DefaultPeerUnreachable)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cp := &ControlPlane{opts: opts, log: opts.Logger, reg: opts.Registry, watching: make(chan struct{}),
		replicaID: cmp.Or(opts.ReplicaID, defaultReplicaID()), instance: rand.Text()}
	if cp.log == nil {
		cp.log = slog.New(slog.DiscardHandler)
	}
	if cp.reg == nil {
		cp.reg = prometheus.NewRegistry()
		cp.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err := cp.listen(); err != nil {
		return nil, err
	}
	if err := cp.build(); err != nil {
		cp.closeListeners()
		return nil, err
	}
	return cp, nil
}

func (o Options) validate() error {
	if o.Delivery != xds.DeliveryLDS && o.Delivery != xds.DeliveryECDS {
		return fmt.Errorf("--filter-delivery %q: want lds or ecds", o.Delivery)
	}
	if o.Debounce < 0 {
		return fmt.Errorf("--debounce %v: want a positive duration", o.Debounce)
	}
	if o.ConfigDir == "" || o.CacheDir == "" {
		return errors.New("a config directory and a cache directory are required")
	}
	for _, p := range o.Peers {
		if _, err := parsePeer(p); err != nil {
			return err
		}
	}
	return o.tlsFiles().validate()
}

func (o Options) tlsFiles() tlsFiles {
	return tlsFiles{cert: o.TLSCertFile, key: o.TLSKeyFile, clientCA: o.ClientCAFile}
}

func (cp *ControlPlane) listen() error {
	var err error
	if cp.xl, err = net.Listen("tcp", cp.opts.XDSListen); err != nil {
		return fmt.Errorf("--xds-listen: %w", err)
	}
	if cp.hl, err = net.Listen("tcp", cp.opts.HTTPListen); err != nil {
		_ = cp.xl.Close()
		return fmt.Errorf("--http-listen: %w", err)
	}
	if cp.al, err = net.Listen("tcp", cmp.Or(cp.opts.AdminListen, "127.0.0.1:0")); err != nil {
		_, _ = cp.xl.Close(), cp.hl.Close()
		return fmt.Errorf("--admin-listen: %w", err)
	}
	scheme := "http"
	if cp.opts.tlsFiles().enabled() {
		scheme = "https"
	}
	if cp.advertise, err = advertiseURL(cp.opts.AdvertiseURL, scheme, cp.hl.Addr()); err != nil {
		cp.closeListeners()
		return err
	}
	return nil
}

func (cp *ControlPlane) closeListeners() { _, _, _ = cp.xl.Close(), cp.hl.Close(), cp.al.Close() }

// build makes the components; none starts a goroutine.
func (cp *ControlPlane) build() error {
	var err error
	cp.mods, err = fetcher.New(fetcher.Options{CacheDir: cp.opts.CacheDir, MaxModuleSize: cp.opts.MaxModuleSize,
		InsecureRegistries: cp.opts.InsecureRegistries, DockerConfig: cp.opts.DockerConfig,
		AllowLinkLocal: cp.opts.AllowLinkLocal, AllowFileRoots: cp.opts.AllowFileRoots,
		Logger: cp.log, Registerer: cp.reg, OnModuleLost: func(sha string) {
			// Called during fetcher.New too, before there is a controller:
			// those modules left the index, so they are pulled anyway.
			if c := cp.ctrl; c != nil {
				c.moduleLost(sha)
			}
		}, OnUnknown: func(sha string) {
			// Another replica may have resolved a moved tag first.
			cp.ctrl.unknownModule(sha)
		}, OnServed: func(sha, remote string) {
			// Envoys that NACKed this module as not cached have it now;
			// peers hear of it too (the Envoy may be on one of them).
			cp.downloads.add(sha, remote, time.Now())
			cp.server.ModuleServed(sha, remote)
		}})
	if err != nil {
		return err
	}
	if cp.server, err = xds.NewServer(xds.ServerOptions{Logger: cp.log, Registerer: cp.reg, Authorize: cp.authorize,
		Clock:                 cp.opts.Clock,
		MaxLabelSetsPerSource: cp.opts.MaxLabelSetsPerSource,
		GroupIdleTimeout:      cp.opts.GroupIdleTimeout,
		OnUnknownVersion:      func(node, typeURL, _ string) { cp.ctrl.unknownVersion(node, typeURL) },
		// A refused module is an event for rollouts, which decides
		// whether it halts one; the engine is never asked back.
		OnModuleRefused: func(node, plugin, sha, reason string) { cp.ctrl.rollouts.moduleRefused(node, plugin, sha, reason) },
		// An Envoy may quote a config it rejects: secrets filled into
		// pluginConfig never go further than the Envoys they were for.
		Redact: func(text string) string { return cp.ctrl.secrets.redact(text) },
	}); err != nil {
		return err
	}
	secretRoots, err := regularfile.CleanRoots(cp.opts.AllowSecretRoots)
	if err != nil {
		return fmt.Errorf("--allow-secret-root: %w", err)
	}
	cp.ctrl = newController(controllerOptions{Logger: cp.log, Modules: cp.mods, Server: cp.server,
		SecretRoots: secretRoots, Advertise: cp.advertise, Delivery: cp.opts.Delivery, Resync: cp.opts.Resync,
		ModuleTLS: xds.ModuleTLS{ClientCert: cp.opts.ClientCAFile != "", SDSDir: cp.opts.EnvoyTLSSDSDir},
		StateFile: filepath.Join(cp.opts.CacheDir, "plugins.json"), ReplicaID: cp.replicaID})
	if err := cp.reg.Register(newRolloutCollector(cp.ctrl)); err != nil {
		return fmt.Errorf("register rollout metrics: %w", err)
	}
	if err := cp.reg.Register(newFleetCollector(cp)); err != nil {
		return fmt.Errorf("register fleet metrics: %w", err)
	}
	if cp.telSvc, err = cp.buildTelemetry(); err != nil {
		return err
	}
	limit, err := xds.NewSourceLimit(cp.opts.MaxStreamsPerSource, cp.log.With("component", "xds"), cp.reg)
	if err != nil {
		return err
	}
	// The telemetry codec hands metrics messages over as bytes and leaves
	// every other message to the proto codec; the flow-control windows are
	// static (see telemetry.ServerOptions).
	grpcOpts := append(append(xds.GRPCServerOptions(), limit.ServerOption()), telemetry.ServerOptions()...)
	if cp.opts.tlsFiles().enabled() {
		if cp.tls, err = newTLSReloader(cp.opts.tlsFiles(), cp.log); err != nil {
			return err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(cp.tls.serverConfig("h2"))))
	}
	cp.grpc = grpc.NewServer(grpcOpts...)
	cp.server.Register(cp.grpc)
	cp.telSvc.Register(cp.grpc)
	// Modules are read by Envoys in one request each; the timeouts bound
	// what a client that stops reading (or never sends) can hold.
	cp.http = &http.Server{Handler: cp.moduleHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(cp.log.With("component", "modules").Handler(), slog.LevelDebug)}
	if cp.tls != nil {
		cp.http.TLSConfig = cp.tls.serverConfig("http/1.1")
	}
	cp.admin = &http.Server{Handler: cp.adminHandler(cp.reg), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute}
	cp.buildPeers()
	return nil
}

// buildPeers sets up how replicas reach each other: over TLS on the admin
// listener when client certificates are required, plain HTTP otherwise.
func (cp *ControlPlane) buildPeers() {
	cp.peerTLS = &peerTLS{}
	if cp.tls != nil && cp.opts.ClientCAFile != "" {
		cp.peerTLS.r = cp.tls
		cp.sniff = newSniffListener(cp.al, cp.peerTLS.serverConfig())
	}
	if len(cp.opts.Peers) == 0 {
		return
	}
	var specs []peerSpec
	for _, p := range cp.opts.Peers {
		s, _ := parsePeer(p) // validated
		specs = append(specs, s)
	}
	transport := &http.Transport{TLSClientConfig: cp.peerTLS.clientConfig(), MaxIdleConnsPerHost: 2,
		ResponseHeaderTimeout: peerRequestTimeout, TLSHandshakeTimeout: peerRequestTimeout,
		DialContext: (&net.Dialer{Timeout: peerRequestTimeout}).DialContext}
	if !cp.peerTLS.enabled() {
		transport.TLSClientConfig = nil
	}
	var resolver ipResolver = net.DefaultResolver
	if cp.opts.peerResolver != nil {
		resolver = cp.opts.peerResolver
	}
	cp.peers = &peerSet{specs: specs, instance: cp.instance, interval: cp.opts.PeerInterval,
		unreachable: cp.opts.PeerUnreachable, scheme: cp.peerTLS.scheme(), resolver: resolver,
		client: &http.Client{Transport: transport, Timeout: peerRequestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log: cp.log.With("component", "peers"), onDoc: cp.mergePeers, peers: map[string]*peer{}}
}

// advertiseURL defaults to the HTTP listener's port on loopback, which
// suits Envoys on the same host.
func advertiseURL(flag, scheme string, addr net.Addr) (string, error) {
	if flag == "" {
		return fmt.Sprintf("%s://127.0.0.1:%d", scheme, addr.(*net.TCPAddr).Port), nil
	}
	if !strings.HasPrefix(flag, "http://") && !strings.HasPrefix(flag, "https://") {
		return "", fmt.Errorf("--advertise-url %q: want http(s)://host:port", flag)
	}
	return strings.TrimRight(flag, "/"), nil
}

// XDSAddr is the ADS listener's address.
func (cp *ControlPlane) XDSAddr() string { return cp.xl.Addr().String() }

// HTTPAddr is the module listener's address.
func (cp *ControlPlane) HTTPAddr() string { return cp.hl.Addr().String() }

// AdminAddr is the admin listener's address.
func (cp *ControlPlane) AdminAddr() string { return cp.al.Addr().String() }

// ReplicaID is this replica's name to its peers.
func (cp *ControlPlane) ReplicaID() string { return cp.replicaID }

// AdvertiseURL is the module server URL pushed to Envoys.
func (cp *ControlPlane) AdvertiseURL() string { return cp.advertise }

// Watching is closed once the config directory has been read the first
// time, i.e. the first desired state is known.
func (cp *ControlPlane) Watching() <-chan struct{} { return cp.watching }

// Run serves until ctx ends or a component fails, then shuts everything
// down and returns once every goroutine it started has stopped. It returns
// nil after ctx ends, else the first failure (an unreadable config
// directory at start, a listener that failed).
func (cp *ControlPlane) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := cp.grpc.Serve(cp.xl); err != nil {
			return fmt.Errorf("xds server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		serve := cp.http.Serve
		if cp.tls != nil {
			serve = func(l net.Listener) error { return cp.http.ServeTLS(l, "", "") }
		}
		if err := serve(cp.hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("module server: %w", err)
		}
		return nil
	})
	admin := cp.al
	if cp.sniff != nil {
		admin = cp.sniff
		g.Go(cp.sniff.acceptLoop)
	}
	g.Go(func() error {
		if err := cp.admin.Serve(admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	if cp.peers != nil {
		g.Go(func() error { cp.peers.run(gctx); return nil })
	}
	g.Go(func() error { cp.ctrl.run(gctx); return nil })
	g.Go(func() error { cp.mods.RunGC(gctx, cp.opts.GCInterval); return nil })
	g.Go(func() error { cp.tel.Run(gctx); return nil })
	g.Go(func() error { cp.telSvc.Run(gctx); return nil })
	g.Go(func() error { cp.analyzer.run(gctx); return nil })
	if cp.opts.ReleaseMemory {
		g.Go(func() error { releaseMemoryAfterDepartures(gctx, cp.server, cp.log); return nil })
	}
	g.Go(func() error { return cp.watch(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		cp.shutdown()
		return nil
	})
	return g.Wait()
}

// watch runs the catalog watch until ctx ends. The catalog hands each new
// state over and goes on: the controller's loop does all waiting.
func (cp *ControlPlane) watch(ctx context.Context) error {
	err := catalog.Watch(ctx, cp.opts.ConfigDir, catalog.WatchOptions{Debounce: cp.opts.Debounce,
		Logger: cp.log, Registerer: cp.reg, OnHealth: cp.setDirErr}, func(st *catalog.State) {
		cp.regrant(st)
		cp.ctrl.onChange(st)
		cp.watchingOnce.Do(func() { close(cp.watching) })
	})
	if err != nil {
		return fmt.Errorf("--config-dir %s: %w", cp.opts.ConfigDir, err)
	}
	return nil
}

// shutdown stops accepting work, ends ADS streams (they never end by
// themselves, so GracefulStop would otherwise wait for the timeout) and
// drains HTTP requests, giving up after the timeout.
func (cp *ControlPlane) shutdown() {
	cp.server.Close()
	cp.mods.Close()
	if err := cp.mods.Flush(); err != nil {
		cp.log.Warn("module cache index not saved", "component", "serve", "error", err)
	}
	stopped := make(chan struct{})
	go func() {
		cp.grpc.GracefulStop()
		close(stopped)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cp.opts.ShutdownTimeout)
	defer cancel()
	for _, srv := range []*http.Server{cp.http, cp.admin} {
		if err := srv.Shutdown(ctx); err != nil {
			cp.log.Warn("http shutdown", "component", "serve", "error", err)
		}
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		cp.grpc.Stop()
		<-stopped
	}
}

func (cp *ControlPlane) setDirErr(err error) {
	cp.healthMu.Lock()
	defer cp.healthMu.Unlock()
	cp.dirErr = err
}

func (cp *ControlPlane) configDirErr() error {
	cp.healthMu.Lock()
	defer cp.healthMu.Unlock()
	return cp.dirErr
}

// notReady says why the control plane is not ready, nil when it is.
func (cp *ControlPlane) notReady() error {
	if !cp.server.Ready() {
		return errors.New("no configuration built yet")
	}
	if !cp.ctrl.warm() {
		return errors.New("modules still resolving for the first time")
	}
	if cp.peers != nil && !cp.peers.settled() {
		return errors.New("asking peers for the halts they apply (each answers or times out within 2 s)")
	}
	if err := cp.configDirErr(); err != nil {
		return fmt.Errorf("%w (the last good configuration keeps serving)", err)
	}
	return nil
}

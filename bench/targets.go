package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/controlplane"
	"github.com/wasmxds/wasmxds/internal/testproc"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// Target is an ADS server under measurement.
type Target interface {
	Name() string
	Addr() string // ADS host:port
	PID() int     // 0 when the server runs inside this process
	// Prepare does everything a change needs up front and returns the
	// change itself, so that timing starts right before it.
	Prepare(marker string) (apply func() error, err error)
	Stop()
}

// Debounce is the config directory watch's quiet period in the wasmxds
// targets (StartServe passes it as --debounce; StartInProcessXDS to
// catalog.Watch). It is part of every wasmxds convergence figure.
var Debounce = catalog.DefaultDebounce

// WasmxdsProc is `wasmxds serve` run from its binary on a fixture.
type WasmxdsProc struct {
	proc      *testproc.Proc
	argv      []string // to start it again (see Restart)
	addr      string
	HTTPAddr  string // module server
	AdminAddr string // health, metrics, status
	fixture   *Fixture
}

// StartWasmxds runs `wasmxds serve` on the fixture's config directory and
// waits until it is ready.
func StartWasmxds(bin string, fx *Fixture, delivery xds.Delivery, dir string, extra ...string) (*WasmxdsProc, error) {
	w, err := StartServe(bin, fx.ConfigDir, delivery, dir, extra...)
	if err != nil {
		return nil, err
	}
	w.fixture = fx
	return w, nil
}

// StartServe runs `wasmxds serve` on configDir, with its cache and log in
// dir and any extra flags, and waits until it is ready. Its Prepare needs
// a fixture: use StartWasmxds for convergence runs.
func StartServe(bin, configDir string, delivery xds.Delivery, dir string, extra ...string) (*WasmxdsProc, error) {
	xdsAddr, err := testproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := testproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := testproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	argv := []string{bin, "serve", "--config-dir", configDir,
		"--cache-dir", filepath.Join(dir, "cache"), "--xds-listen", xdsAddr, "--http-listen", httpAddr, "--admin-listen", adminAddr,
		"--advertise-url", "http://" + httpAddr, "--filter-delivery", string(delivery), "--debounce", Debounce.String()}
	// The simulated fleet is thousands of clients on one address. An
	// older binary (BENCH_WASMXDS_BIN) may not know these bounds: it has none.
	for _, kv := range [][2]string{{"--max-streams-per-source", "0"}, {"--max-label-sets-per-source", "-1"}} {
		if serveKnows(bin, kv[0]) {
			argv = append(argv, kv[0], kv[1])
		}
	}
	argv = append(argv, extra...)
	p, err := testproc.Start("wasmxds", filepath.Join(dir, "wasmxds.log"), nil, argv...)
	if err != nil {
		return nil, err
	}
	w := &WasmxdsProc{proc: p, argv: argv, addr: xdsAddr, HTTPAddr: httpAddr, AdminAddr: adminAddr}
	if err := p.WaitHTTP("http://"+adminAddr+"/readyz", 60*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("wasmxds not ready: %w", err)
	}
	return w, nil
}

// Name implements Target.
func (w *WasmxdsProc) Name() string { return "wasmxds" }

// Addr implements Target.
func (w *WasmxdsProc) Addr() string { return w.addr }

// PID implements Target.
func (w *WasmxdsProc) PID() int { return w.proc.PID() }

// Stop implements Target.
func (w *WasmxdsProc) Stop() { w.proc.Stop() }

// Prepare implements Target: the change is a rewrite of the edited spec.
func (w *WasmxdsProc) Prepare(marker string) (func() error, error) {
	if w.fixture == nil {
		return nil, errors.New("wasmxds: started without a fixture")
	}
	return func() error { return w.fixture.Edit(marker) }, nil
}

// FloorProc is the floor server run from its binary.
type FloorProc struct {
	proc     *testproc.Proc
	addr     string
	control  string
	fixture  *Fixture
	delivery xds.Delivery
}

// floorModuleURL is the module server the floor's resources advertise;
// nothing downloads from it.
const floorModuleURL = "http://127.0.0.1:18080"

// StartFloor runs the floor server and gives it the fixture's resources.
func StartFloor(bin string, fx *Fixture, delivery xds.Delivery, dir string) (*FloorProc, error) {
	xdsAddr, err := testproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	control, err := testproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := testproc.Start("xdsfloor", filepath.Join(dir, "xdsfloor.log"), nil, bin, "--xds-listen", xdsAddr, "--control-listen", control)
	if err != nil {
		return nil, err
	}
	f := &FloorProc{proc: p, addr: xdsAddr, control: control, fixture: fx, delivery: delivery}
	if err := p.WaitHTTP("http://"+control+"/healthz", 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	apply, err := f.Prepare("initial")
	if err == nil {
		err = apply()
	}
	if err != nil {
		p.Stop()
		return nil, err
	}
	return f, nil
}

// Name implements Target.
func (f *FloorProc) Name() string { return "floor" }

// Addr implements Target.
func (f *FloorProc) Addr() string { return f.addr }

// PID implements Target.
func (f *FloorProc) PID() int { return f.proc.PID() }

// Stop implements Target.
func (f *FloorProc) Stop() { f.proc.Stop() }

// Prepare implements Target: the resources are translated and encoded
// here, so the change is only their upload.
func (f *FloorProc) Prepare(marker string) (func() error, error) {
	res, err := f.fixture.Resources(marker, floorModuleURL, f.delivery)
	if err != nil {
		return nil, err
	}
	body, err := EncodeResources(res)
	if err != nil {
		return nil, err
	}
	url := "http://" + f.control + "/resources"
	return func() error { return putResources(url, body) }, nil
}

func putResources(url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("floor: PUT /resources: %s", resp.Status)
	}
	return nil
}

// inProcess is the floor server running inside this process on a loopback
// listener.
type inProcess struct {
	name    string
	addr    string
	gs      *grpc.Server
	cancel  context.CancelFunc
	prepare func(marker string) (func() error, error)
	stop    func()
}

// Name implements Target.
func (p *inProcess) Name() string { return p.name }

// Addr implements Target.
func (p *inProcess) Addr() string { return p.addr }

// PID implements Target: zero, the server shares this process.
func (p *inProcess) PID() int { return 0 }

// Stop implements Target.
func (p *inProcess) Stop() {
	p.cancel()
	if p.stop != nil {
		p.stop()
	}
	p.gs.Stop()
}

// Prepare implements Target.
func (p *inProcess) Prepare(marker string) (func() error, error) { return p.prepare(marker) }

func listenGRPC(register func(grpc.ServiceRegistrar)) (*grpc.Server, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("listen: %w", err)
	}
	gs := grpc.NewServer(xds.GRPCTransportOptions()...)
	register(gs)
	go func() { _ = gs.Serve(l) }()
	return gs, l.Addr().String(), nil
}

// StartInProcessFloor runs the floor server in this process.
func StartInProcessFloor(fx *Fixture, delivery xds.Delivery) (Target, error) {
	ctx, cancel := context.WithCancel(context.Background())
	floor := NewFloorServer(ctx, nil)
	gs, addr, err := listenGRPC(floor.Register)
	if err != nil {
		cancel()
		return nil, err
	}
	p := &inProcess{name: "floor", addr: addr, gs: gs, cancel: cancel}
	p.prepare = func(marker string) (func() error, error) {
		res, err := fx.Resources(marker, floorModuleURL, delivery)
		if err != nil {
			return nil, err
		}
		body, err := EncodeResources(res)
		if err != nil {
			return nil, err
		}
		return func() error {
			decoded, err := decodeResources(bytes.NewReader(body))
			if err != nil {
				return err
			}
			return floor.SetResources(decoded)
		}, nil
	}
	apply, err := p.prepare("initial")
	if err == nil {
		err = apply()
	}
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// StartInProcessXDS runs the wasmxds runtime (the same one `wasmxds serve`
// runs) in this process on the fixture's config directory, with its module
// cache in a temporary directory.
func StartInProcessXDS(fx *Fixture, delivery xds.Delivery) (Target, error) {
	cacheDir, err := os.MkdirTemp("", "bench-cache-")
	if err != nil {
		return nil, fmt.Errorf("in-process wasmxds: %w", err)
	}
	cp, err := controlplane.New(controlplane.Options{ConfigDir: fx.ConfigDir, CacheDir: cacheDir,
		XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Delivery: delivery, Debounce: Debounce,
		Logger: discardLogger()})
	if err != nil {
		_ = os.RemoveAll(cacheDir)
		return nil, fmt.Errorf("in-process wasmxds: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	stop := func() {
		cancel()
		<-done
		_ = os.RemoveAll(cacheDir)
	}
	p := &runtimeTarget{addr: cp.XDSAddr(), stop: stop, fx: fx}
	if err := testproc.Poll(30*time.Second, 5*time.Millisecond, func() error {
		if !cp.Status().Ready {
			return errors.New("wasmxds not ready")
		}
		return nil
	}); err != nil {
		stop()
		return nil, err
	}
	return p, nil
}

// runtimeTarget is the wasmxds runtime running in this process.
type runtimeTarget struct {
	addr string
	stop func()
	fx   *Fixture
}

// Name implements Target.
func (p *runtimeTarget) Name() string { return "wasmxds-inprocess" }

// Addr implements Target.
func (p *runtimeTarget) Addr() string { return p.addr }

// PID implements Target: zero, the server shares this process.
func (p *runtimeTarget) PID() int { return 0 }

// Stop implements Target.
func (p *runtimeTarget) Stop() { p.stop() }

// Prepare implements Target: the change is a rewrite of the edited spec.
func (p *runtimeTarget) Prepare(marker string) (func() error, error) {
	return func() error { return p.fx.Edit(marker) }, nil
}

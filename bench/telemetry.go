package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	promgo "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wasmxds/wasmxds/internal/xds"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// TelemetryOptions configure RunTelemetry.
type TelemetryOptions struct {
	Fleet FleetOptions
	// Report makes every client stream its stats, one flush per Every, as
	// Envoy's metrics_service sink does; without it the fleet only holds
	// its ADS streams (the baseline).
	Report   bool
	Every    time.Duration // zero means 1s
	Duration time.Duration // how long the fleet runs; zero means a minute
	Families int           // per flush; zero means 200
	// Lockstep makes every client flush at the same instant of each
	// second, the worst case; without it each client keeps its own phase
	// within the second, as Envoys started at different times do (a
	// stats flush timer starts with its Envoy).
	Lockstep bool
	// Profiles, when set, runs serve with --pprof and saves its heap
	// profile, memory statistics and goroutines at the end of the run
	// under this path prefix.
	Profiles string
}

// TelemetryResult is one fleet's run.
type TelemetryResult struct {
	Report                 bool
	Clients                int
	RSSReady, RSSEnd, Peak int64 // VmRSS: fleet connected, after Duration, highest sampled
	Sent, SendErrors       int64
	BigRefused             string // how the 10 MB message ended, with Report
	HealthyAfterBig        bool   // readyz, the fleet's streams and a new report after it
	BigMessageBytes        int
}

// RunTelemetry starts `wasmxds serve` on fx, connects a fleet and, with
// Report, has every client send a flush every second over its own
// connection (Envoy reports over its ADS cluster), sampling the server's
// RSS each second. With Report it then sends a 10 MB metrics message and
// checks that the server refused it and stays healthy.
func RunTelemetry(ctx context.Context, bin string, fx *Fixture, dir string, o TelemetryOptions) (TelemetryResult, error) {
	o.Every, o.Duration = orDuration(o.Every, time.Second), orDuration(o.Duration, time.Minute)
	if o.Families == 0 {
		o.Families = 200
	}
	res := TelemetryResult{Report: o.Report, Clients: o.Fleet.Clients}
	var extra []string
	if o.Profiles != "" {
		extra = append(extra, "--pprof")
	}
	w, err := StartWasmxds(bin, fx, xds.DeliveryECDS, dir, extra...)
	if err != nil {
		return res, err
	}
	defer w.Stop()
	o.Fleet.Addr = w.Addr()
	fleet, err := StartFleet(ctx, o.Fleet)
	if err != nil {
		return res, err
	}
	defer fleet.Close()
	res.RSSReady = rssOf(w)
	if o.Profiles != "" {
		// After a collection: what the run allocates is then the
		// difference between this profile and the last one.
		if err := saveHeapProfile("http://"+w.AdminAddr+"/debug/pprof/heap?gc=1", o.Profiles+".start.heap"); err != nil {
			return res, err
		}
	}
	flush := xdstest.Flush{Listeners: []string{"bench-http", "bench-other"}, Plugins: []string{"bench-a", "bench-b"},
		Requests: 100, Errors5xx: 1, AtLeast: o.Families}.Families()
	var reporters []*xdstest.Reporter
	if o.Report {
		if reporters, err = openReporters(fleet); err != nil {
			return res, err
		}
	}
	res.Peak = res.RSSReady
	tick := time.NewTicker(o.Every)
	defer tick.Stop()
	spread := o.Every * 9 / 10
	if o.Lockstep {
		spread = 0
	}
	for end := time.Now().Add(o.Duration); time.Now().Before(end); {
		<-tick.C
		sent, failed := sendAll(reporters, flush, spread)
		res.Sent, res.SendErrors = res.Sent+sent, res.SendErrors+failed
		res.Peak = max(res.Peak, rssOf(w))
	}
	res.RSSEnd = rssOf(w)
	if o.Profiles != "" {
		base := "http://" + w.AdminAddr + "/debug/pprof/"
		if err := errors.Join(saveHeapProfile(base+"heap?debug=1", o.Profiles+".heap.txt"),
			saveHeapProfile(base+"heap?gc=1", o.Profiles+".heap"),
			saveHeapProfile(base+"goroutine?debug=1", o.Profiles+".goroutines.txt")); err != nil {
			return res, err
		}
	}
	if err := fleet.Err(); err != nil {
		return res, err
	}
	if o.Report {
		res.BigRefused, res.BigMessageBytes, err = sendBig(w.Addr())
		if err != nil {
			return res, err
		}
		res.HealthyAfterBig = healthyAfter(w, fleet, flush) == nil
	}
	return res, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func openReporters(f *Fleet) ([]*xdstest.Reporter, error) {
	out := make([]*xdstest.Reporter, len(f.clients))
	for i, c := range f.clients {
		r, err := xdstest.Report(c.Conn(), c.NodeProto())
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		out[i] = r
	}
	return out, nil
}

// sendAll sends one flush on every reporter, 32 at a time: reporter i
// i/len(reporters) of spread after the first (at once when spread is 0).
func sendAll(reporters []*xdstest.Reporter, flush []*promgo.MetricFamily, spread time.Duration) (sent, failed int64) {
	var ok, bad atomic.Int64
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	start := time.Now()
	for i, r := range reporters {
		if spread > 0 {
			time.Sleep(time.Until(start.Add(spread * time.Duration(i) / time.Duration(len(reporters)))))
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.Send(flush); err != nil {
				bad.Add(1)
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	return ok.Load(), bad.Load()
}

// sendBig sends a 10 MB metrics message on a connection of its own and
// returns how the server ended the stream.
func sendBig(addr string) (string, int, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	big := []*promgo.MetricFamily{xdstest.Counter("wasmcustom."+strings.Repeat("x", 10<<20), 1)}
	r, err := xdstest.Report(conn, xdstest.Node("bench-big", "bench", nil))
	if err != nil {
		return "", 0, err
	}
	err = r.Send(big)
	if err == nil {
		err = r.Close()
	}
	if status.Code(err) != codes.ResourceExhausted {
		return "", 0, fmt.Errorf("10 MB metrics message: %v, want ResourceExhausted", err)
	}
	return status.Code(err).String(), 10<<20 + 64, nil
}

// healthyAfter checks the server after the big message: ready, every ADS
// stream of the fleet still open, and a new report accepted.
func healthyAfter(w *WasmxdsProc, f *Fleet, flush []*promgo.MetricFamily) error {
	resp, err := http.Get("http://" + w.AdminAddr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %s", resp.Status)
	}
	if err := f.Err(); err != nil {
		return err
	}
	c := f.clients[0]
	r, err := xdstest.Report(c.Conn(), c.NodeProto())
	if err != nil {
		return err
	}
	if err := r.Send(flush); err != nil {
		return err
	}
	if err := r.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

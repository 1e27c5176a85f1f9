package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// CyclesOptions configures RunCycles.
type CyclesOptions struct {
	Fleet  FleetOptions // Addr is filled in from the server
	Cycles int          // fleets that connect and leave; zero means 3
	// GroupIdleTimeout is passed as serve --group-idle-timeout; zero means
	// 5 s.
	GroupIdleTimeout time.Duration
	// SettleTimeout bounds the wait for RSS to come back within 10% of
	// idle after each fleet (see settleRSS); zero means 30 s. The groups
	// are waited for up to the idle timeout and 2 minutes more.
	SettleTimeout time.Duration
}

// Cycle is one fleet's visit.
type Cycle struct {
	Connect      time.Duration // to connect and hold its configuration
	RSSConnected int64
	// GroupsGone is from the fleet's departure until the server reported
	// no node group; RSSAfter is the server's RSS then, once it stopped
	// falling (see settleRSS).
	GroupsGone time.Duration
	RSSAfter   int64
}

// CyclesResult is what RunCycles measured.
type CyclesResult struct {
	Clients int
	RSSIdle int64
	Cycles  []Cycle
}

// RunCycles starts `wasmxds serve` and has Cycles fleets of the same size
// (each with its own node ids) connect, take their configuration and
// leave, one after another, measuring the server's memory and how long
// the departed fleet's groups take to go.
func RunCycles(ctx context.Context, bin string, fx *Fixture, delivery xds.Delivery, dir string, opts CyclesOptions) (CyclesResult, error) {
	idle := cmpOr(opts.GroupIdleTimeout, 5*time.Second)
	settle := cmpOr(opts.SettleTimeout, 30*time.Second)
	w, err := StartServe(bin, fx.ConfigDir, delivery, dir, "--group-idle-timeout", idle.String())
	if err != nil {
		return CyclesResult{}, err
	}
	defer w.Stop()
	res := CyclesResult{Clients: opts.Fleet.Clients, RSSIdle: rssOf(w)}
	metrics := "http://" + w.AdminAddr + "/metrics"
	for i := range cmpOr(opts.Cycles, 3) {
		fo := opts.Fleet
		fo.Addr, fo.NodePrefix = w.Addr(), fmt.Sprintf("cycle%d-", i)
		start := time.Now()
		fleet, err := StartFleet(ctx, fo)
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			err = fleet.WaitReady(wctx)
			cancel()
		}
		if err != nil {
			if fleet != nil {
				fleet.Close()
			}
			return res, fmt.Errorf("cycle %d: %w", i, err)
		}
		c := Cycle{Connect: time.Since(start), RSSConnected: rssOf(w)}
		fleet.Close()
		left := time.Now()
		err = testproc.Poll(idle+2*time.Minute, 250*time.Millisecond, func() error {
			n, err := testproc.Metric(metrics, "wasmxds_xds_node_groups")
			if err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("%v node groups left", n)
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("cycle %d: the departed fleet's groups: %w", i, err)
		}
		c.GroupsGone = time.Since(left)
		c.RSSAfter, _ = settleRSS(w, res.RSSIdle, settle)
		res.Cycles = append(res.Cycles, c)
	}
	return res, nil
}

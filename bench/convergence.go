package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// ConvergenceOptions configures RunConvergence.
type ConvergenceOptions struct {
	Fleet  FleetOptions // Addr is filled in from the target
	Rounds int          // changes measured; zero means 3
	// RoundTimeout bounds each change; zero means 30 s.
	RoundTimeout time.Duration
	// ConnectTimeout bounds connecting the fleet; zero means 5 minutes.
	ConnectTimeout time.Duration
	// SettleTimeout bounds how long to wait, after the fleet left, for the
	// server's RSS to come back within 10% of its idle value; zero means
	// 2 minutes.
	SettleTimeout time.Duration
}

// ConvergenceResult is what one fleet saw of a target's changes.
type ConvergenceResult struct {
	Target  string
	Clients int
	Groups  int
	Mode    Mode
	Rounds  int
	Connect time.Duration // to connect the fleet and deliver its full configuration
	// Delays from each change to each client's ACK of it, pooled over
	// rounds and sorted.
	Delays []time.Duration
	// RoundMax is, per round, the time until the last client ACKed.
	RoundMax []time.Duration
	Missing  int // client ACKs that never came, summed over rounds
	// Server RSS in bytes: before the fleet, with it connected (after the
	// changes), and after it left (see Settle). Zero for in-process
	// targets.
	RSSIdle, RSSConnected, RSSAfter int64
	Settle                          time.Duration // how long RSSAfter took to reach
	// RoundCPU is, per round, the CPU time (user + system) the server
	// process spent from the change until the last client ACKed. Empty
	// for in-process targets.
	RoundCPU []time.Duration
	// GeneratorCPU is, per round, the CPU time the load generator (this
	// process: the simulated fleet) spent over the same span.
	GeneratorCPU []time.Duration
}

// CPUPerRound is the mean CPU time the server spent on a round.
func (r ConvergenceResult) CPUPerRound() time.Duration { return mean(r.RoundCPU) }

// GeneratorCPUPerRound is the mean CPU time the load generator spent on a
// round.
func (r ConvergenceResult) GeneratorCPUPerRound() time.Duration { return mean(r.GeneratorCPU) }

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// Percentile returns the q-quantile (0 < q ≤ 1) of sorted delays.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// P50 is the median delay.
func (r ConvergenceResult) P50() time.Duration { return Percentile(r.Delays, 0.50) }

// P99 is the 99th percentile delay.
func (r ConvergenceResult) P99() time.Duration { return Percentile(r.Delays, 0.99) }

// Max is the longest time to 100% over the rounds.
func (r ConvergenceResult) Max() time.Duration {
	return slices.Max(append([]time.Duration{0}, r.RoundMax...))
}

// MedianRound is the median over the rounds of the time until the last
// client ACKed.
func (r ConvergenceResult) MedianRound() time.Duration {
	if len(r.RoundMax) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(r.RoundMax))
	return sorted[(len(sorted)-1)/2]
}

// PerClient is the server's RSS growth per connected client, in bytes.
func (r ConvergenceResult) PerClient() int64 {
	if r.Clients == 0 || r.RSSConnected == 0 {
		return 0
	}
	return (r.RSSConnected - r.RSSIdle) / int64(r.Clients)
}

// RunConvergence connects a fleet to t, makes opts.Rounds changes, each
// timed from just before it is made to each client's ACK of it, then
// disconnects the fleet and watches the server's memory come back.
func RunConvergence(ctx context.Context, t Target, opts ConvergenceOptions) (ConvergenceResult, error) {
	opts.Fleet.Addr = t.Addr()
	rounds := cmpOr(opts.Rounds, 3)
	res := ConvergenceResult{Target: t.Name(), Clients: opts.Fleet.Clients, Groups: max(opts.Fleet.Groups, 1),
		Mode: cmpOr(opts.Fleet.Mode, ModeSotW), Rounds: rounds}
	res.RSSIdle = rssOf(t)
	if t.PID() != 0 {
		defer quietGenerator()()
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, cmpOr(opts.ConnectTimeout, 5*time.Minute))
	fleet, err := StartFleet(cctx, opts.Fleet)
	cancel()
	if err != nil {
		return res, fmt.Errorf("%s: connect %d clients: %w", t.Name(), opts.Fleet.Clients, err)
	}
	res.Connect = time.Since(start)
	if t.PID() != 0 {
		settleGenerator()
	}
	err = runRounds(ctx, t, fleet, rounds, cmpOr(opts.RoundTimeout, 30*time.Second), &res)
	res.RSSConnected = rssOf(t)
	fleet.Close()
	if err != nil {
		return res, err
	}
	slices.Sort(res.Delays)
	res.RSSAfter, res.Settle = settleRSS(t, res.RSSIdle, cmpOr(opts.SettleTimeout, 2*time.Minute))
	return res, nil
}

func runRounds(ctx context.Context, t Target, fleet *Fleet, rounds int, timeout time.Duration, res *ConvergenceResult) error {
	for i := range rounds {
		marker := fmt.Sprintf("round-%d-%08x", i, rand.Uint32())
		apply, err := t.Prepare(marker)
		if err != nil {
			return fmt.Errorf("%s: prepare round %d: %w", t.Name(), i, err)
		}
		r := fleet.Begin(marker)
		cpuStart, genStart := cpuOf(t), generatorCPU(t)
		if err := apply(); err != nil {
			return fmt.Errorf("%s: round %d: %w", t.Name(), i, err)
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		delays, err := r.Wait(rctx, fleet)
		cancel()
		if cpuStart >= 0 {
			if end := cpuOf(t); end >= 0 {
				res.RoundCPU = append(res.RoundCPU, end-cpuStart)
			}
		}
		if genStart >= 0 {
			if end := generatorCPU(t); end >= 0 {
				res.GeneratorCPU = append(res.GeneratorCPU, end-genStart)
			}
		}
		res.Missing += res.Clients - len(delays)
		res.Delays = append(res.Delays, delays...)
		if len(delays) > 0 {
			res.RoundMax = append(res.RoundMax, slices.Max(delays))
		}
		if err != nil {
			return fmt.Errorf("%s: round %d: %w", t.Name(), i, err)
		}
	}
	return nil
}

// cpuOf is the CPU time the target's process has used, -1 when unknown.
func cpuOf(t Target) time.Duration {
	if t.PID() == 0 {
		return -1
	}
	d, err := CPUTime(t.PID())
	if err != nil {
		slog.Warn("cpu time", "target", t.Name(), "error", err)
		return -1
	}
	return d
}

// generatorCPU is the CPU time this process (the load generator) has used,
// -1 when unknown or when the target runs in this process too.
func generatorCPU(t Target) time.Duration {
	if t.PID() == 0 {
		return -1
	}
	d, err := CPUTime(os.Getpid())
	if err != nil {
		slog.Warn("cpu time", "target", "load generator", "error", err)
		return -1
	}
	return d
}

func rssOf(t Target) int64 {
	if t.PID() == 0 {
		return 0
	}
	rss, err := RSS(t.PID())
	if err != nil {
		return 0
	}
	return rss
}

// settleRSS polls the server's RSS until it is within 10% of idle or the
// timeout passes: the Go runtime returns freed memory to the OS gradually.
func settleRSS(t Target, idle int64, timeout time.Duration) (int64, time.Duration) {
	if t.PID() == 0 {
		return 0, 0
	}
	start := time.Now()
	var rss int64
	_ = testproc.Poll(timeout, 500*time.Millisecond, func() error {
		rss = rssOf(t)
		if float64(rss) > 1.1*float64(idle) {
			return fmt.Errorf("rss %d above idle %d", rss, idle)
		}
		return nil
	})
	return rss, time.Since(start)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

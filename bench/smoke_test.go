package bench

import (
	"context"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// TestConvergenceSmoke runs the convergence harness with a small mixed
// SotW/delta fleet against the xds server (fed by a catalog watch) and the
// floor, both in this process: every client must ACK every change.
func TestConvergenceSmoke(t *testing.T) {
	for _, delivery := range []xds.Delivery{xds.DeliveryLDS, xds.DeliveryECDS} {
		t.Run(string(delivery), func(t *testing.T) {
			fx, err := NewFixture(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			starts := map[string]func(*Fixture, xds.Delivery) (Target, error){
				"floor": StartInProcessFloor, "wasmxds": StartInProcessXDS,
			}
			for name, start := range starts {
				target, err := start(fx, delivery)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				res, err := RunConvergence(context.Background(), target, ConvergenceOptions{
					Fleet:  FleetOptions{Clients: 20, Groups: 4, Mode: ModeMixed},
					Rounds: 2, RoundTimeout: 10 * time.Second, ConnectTimeout: 10 * time.Second,
				})
				target.Stop()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if len(res.Delays) != 40 || res.Missing != 0 {
					t.Errorf("%s: %d ACKs of 40, %d missing", name, len(res.Delays), res.Missing)
				}
				t.Logf("%s %s: p50 %v p99 %v max %v connect %v", name, delivery, res.P50(), res.P99(), res.Max(), res.Connect)
			}
		})
	}
}

// TestRoundIgnoresOtherMarkers checks that a client counts only responses
// carrying the round's marker: an unrelated change must not end a round.
func TestRoundIgnoresOtherMarkers(t *testing.T) {
	fx, err := NewFixture(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	target, err := StartInProcessFloor(fx, xds.DeliveryLDS)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fleet, err := StartFleet(ctx, FleetOptions{Addr: target.Addr(), Clients: 4, Mode: ModeMixed})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	apply, err := target.Prepare("some-other-change")
	if err != nil {
		t.Fatal(err)
	}
	r := fleet.Begin("the-awaited-change")
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if delays, err := r.Wait(short, fleet); err == nil || len(delays) != 0 {
		t.Fatalf("round ended on an unrelated change: %d ACKs, err %v", len(delays), err)
	}
	apply, err = target.Prepare("the-awaited-change")
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	if delays, err := r.Wait(ctx, fleet); err != nil || len(delays) != 4 {
		t.Fatalf("awaited change: %d ACKs, err %v", len(delays), err)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := Percentile(d, q); got != want {
			t.Errorf("Percentile(1..100ms, %v) = %v, want %v", q, got, want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

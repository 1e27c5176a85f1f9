package telemetry

import (
	"fmt"
	"strings"
	"testing"
	"time"

	promgo "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"
)

func counter(name string, v float64) *promgo.MetricFamily {
	t := promgo.MetricType_COUNTER
	return &promgo.MetricFamily{Name: &name, Type: &t, Metric: []*promgo.Metric{{Counter: &promgo.Counter{Value: &v}}}}
}

func gauge(name string, v float64) *promgo.MetricFamily {
	t := promgo.MetricType_GAUGE
	return &promgo.MetricFamily{Name: &name, Type: &t, Metric: []*promgo.Metric{{Gauge: &promgo.Gauge{Value: &v}}}}
}

func newFake() *clocktesting.FakeClock { return clocktesting.NewFakeClock(time.Unix(1_000_000, 0)) }

func TestListenerCountsOverTheLastMinute(t *testing.T) {
	clk := newFake()
	s := NewStore(Options{Clock: clk})
	for range 3 {
		s.Report("n1", []*promgo.MetricFamily{counter("http.web.downstream_rq_total", 10),
			counter("http.web.downstream_rq_5xx", 2), counter("http.other.downstream_rq_total", 99),
			counter("wasm.auth.vm_reload_success", 1), counter("wasm.auth.vm_reload_failure", 1)})
		clk.Step(5 * time.Second)
	}
	rt, ok := s.Plugin("n1", "auth", []string{"web"})
	if !ok || rt.Requests != 30 || rt.Errors5xx != 6 || rt.VMReloads != 6 {
		t.Fatalf("runtime = %+v, %v; want 30 requests, 6 5xx, 6 reloads", rt, ok)
	}
	clk.Step(Window - 15*time.Second) // a minute after the first report: it left the window
	rt, _ = s.Plugin("n1", "auth", []string{"web"})
	if rt.Requests != 20 || rt.Errors5xx != 4 {
		t.Errorf("after %s: %+v, want the last two reports only", Window, rt)
	}
	tot, _ := s.Totals("n1", "auth", []string{"web", "other"})
	if tot.Requests != 30+3*99 || tot.Errors5xx != 6 || tot.VMReloads != 6 {
		t.Errorf("totals = %+v", tot)
	}
	if _, ok := s.Plugin("n2", "auth", nil); ok {
		t.Error("a node that never reported has runtime")
	}
}

func TestVMCountersAndCustomMetrics(t *testing.T) {
	clk := newFake()
	s := NewStore(Options{Clock: clk, MaxCustom: 2})
	s.Report("n1", []*promgo.MetricFamily{counter(vmsCreated, 3), gauge(vmsActive, 2),
		counter("wasmcustom.hits", 5), gauge("wasmcustom.depth", 7), counter("wasmcustom.third", 1)})
	nt, ok := s.Node("n1")
	if !ok || nt.VMsCreated != 3 || nt.VMsActive != 2 || len(nt.CustomMetrics) != 2 {
		t.Fatalf("node telemetry = %+v", nt)
	}
	if m := nt.CustomMetrics[0]; m.Name != "wasmcustom.depth" || m.Type != "gauge" || m.Value != 7 {
		t.Errorf("custom[0] = %+v", m)
	}
}

func TestBoundedWhateverANodeSends(t *testing.T) {
	clk := newFake()
	s := NewStore(Options{Clock: clk, MaxListeners: 4, MaxPlugins: 4, MaxCustom: 4})
	var fams []*promgo.MetricFamily
	for i := range 10_000 {
		fams = append(fams, counter(fmt.Sprintf("http.l%d.downstream_rq_total", i), 1),
			counter(fmt.Sprintf("wasm.p%d.vm_reload_success", i), 1), gauge(fmt.Sprintf("wasmcustom.m%d", i), 1))
	}
	fams = append(fams, counter("http."+strings.Repeat("x", 1<<20)+".downstream_rq_total", 1),
		counter("http.l0.downstream_rq_total", -5), counter("http.l1.downstream_rq_total", 1e300))
	s.Report("n1", fams)
	n := s.nodes["n1"]
	if len(n.listeners) != 4 || len(n.reloads) != 4 || len(n.custom) != 4 {
		t.Fatalf("kept %d listeners, %d plugins, %d custom metrics; want 4 each", len(n.listeners), len(n.reloads), len(n.custom))
	}
	if n.listeners["l0"].requests.total != 1 || n.listeners["l1"].requests.total != 1+maxDelta {
		t.Errorf("negative or huge deltas not refused or capped: l0 %d, l1 %d", n.listeners["l0"].requests.total,
			n.listeners["l1"].requests.total)
	}
}

func TestNodesBoundedAndForgotten(t *testing.T) {
	clk := newFake()
	known := map[string]bool{}
	s := NewStore(Options{Clock: clk, MaxNodes: 3, Known: func(id string) bool { return !known["stranger"] || id != "stranger" }})
	for i := range 5 {
		s.Report(fmt.Sprintf("n%d", i), nil)
		clk.Step(time.Second)
	}
	if s.Len() != 3 {
		t.Fatalf("%d nodes kept, want 3", s.Len())
	}
	if _, ok := s.Node("n0"); ok {
		t.Error("the node that reported least recently was kept over newer ones")
	}
	known["stranger"] = true
	if s.Report("stranger", nil) {
		t.Error("a node Known refuses was kept")
	}
	clk.Step(DefaultForget + time.Second)
	if n := s.Sweep(); n != 3 || s.Len() != 0 {
		t.Errorf("sweep forgot %d, %d left; want 3, 0", n, s.Len())
	}
}

// A series keeps the increases of the last Window in a ring of slots:
// increases leave it as they age, a long silence empties it, and one
// older than the ring counts in the total only.
func TestSeriesKeepsTheLastWindow(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var s series
	s.add(at(0), 1)
	s.add(at(slotWidth), 2)
	s.add(at(3*slotWidth), 4)
	for _, c := range []struct {
		at   time.Duration
		want uint64
	}{
		{0, 1}, {3 * slotWidth, 7}, {Window - slotWidth, 7}, {Window, 6}, {Window + slotWidth, 4},
		{Window + 3*slotWidth, 0}, {-slotWidth, 0},
	} {
		if got := s.recent(at(c.at)); got != c.want {
			t.Errorf("recent at %v: %d, want %d", c.at, got, c.want)
		}
	}
	s.add(at(Window+2*slotWidth), 8) // the slots of 0 and slotWidth are reused
	s.add(at(-slotWidth), 16)        // older than the ring
	s.add(at(3*slotWidth), 32)       // still in the ring
	if got := s.recent(at(Window + 2*slotWidth)); got != 4+8+32 {
		t.Errorf("recent after reuse: %d, want %d", got, 4+8+32)
	}
	s.add(at(10*Window), 64) // after a long silence
	if got := s.recent(at(10 * Window)); got != 64 {
		t.Errorf("recent after a silence: %d, want 64", got)
	}
	if s.total != 1+2+4+8+16+32+64 {
		t.Errorf("total %d, want every increase", s.total)
	}
}

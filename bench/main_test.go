package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// reproduce is the command that produced this run's figures: make bench
// with the BENCH_ knobs that were set, so that a partial run says so.
func reproduce() string {
	var knobs []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "BENCH_") && !strings.HasPrefix(kv, "BENCH_NO_WRITE=") {
			knobs = append(knobs, kv)
		}
	}
	slices.Sort(knobs)
	return strings.Join(append(knobs, "make bench"), " ")
}

var (
	// report collects every benchmark's table; TestMain prints it and
	// writes it into BENCHMARKS.md.
	report  Report
	machine Machine
	// binDir holds the binaries built for this run.
	binDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	machine = ThisMachine()
	if v := os.Getenv("BENCH_DEBOUNCE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "bench: BENCH_DEBOUNCE=%q: want a positive duration\n", v)
			os.Exit(2)
		}
		Debounce = d
	}
	if _, err := RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	dir, err := os.MkdirTemp("", "wasmxds-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if !report.Empty() {
		md := report.Markdown(machine, reproduce())
		fmt.Println(md)
		if os.Getenv("BENCH_NO_WRITE") == "" {
			if err := WriteGenerated(filepath.Join(RepoRoot(), "BENCHMARKS.md"), md); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// binaries builds wasmxds and the floor server once per run.
// BENCH_WASMXDS_BIN runs another wasmxds binary instead (an older build,
// to measure before a change); flags it does not know are left out (see
// StartServe).
func binaries(b *testing.B) Binaries {
	b.Helper()
	bins, err := Build(binDir)
	if err != nil {
		b.Fatal(err)
	}
	if bin := os.Getenv("BENCH_WASMXDS_BIN"); bin != "" {
		bins.Wasmxds = bin
	}
	return bins
}

// envInts reads a comma-separated list of integers from the environment.
func envInts(b *testing.B, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			b.Fatalf("%s=%q: %v", name, v, err)
		}
		out = append(out, n)
	}
	return out
}

func envInt(b *testing.B, name string, def int) int { return envInts(b, name, []int{def})[0] }

// envDelivery is the filter delivery mode under test: serve's default,
// ecds, unless BENCH_DELIVERY says otherwise.
func envDelivery(b *testing.B) xds.Delivery {
	switch d := xds.Delivery(os.Getenv("BENCH_DELIVERY")); d {
	case "":
		return xds.DeliveryECDS
	case xds.DeliveryLDS, xds.DeliveryECDS:
		return d
	default:
		b.Fatalf("BENCH_DELIVERY=%q: want lds or ecds", d)
		return ""
	}
}

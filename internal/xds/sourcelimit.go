package xds

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxStreamsPerSource bounds the ADS streams one source address may
// hold open at once. An Envoy holds one; the bound leaves room for many
// Envoys behind one address (a NAT, a host running a fleet on loopback)
// while a single client opening streams on many connections cannot grow the
// server without limit: 100 streams per connection alone would let 50
// connections carry 5,000.
const DefaultMaxStreamsPerSource = 1024

// SourceLimit bounds the concurrent gRPC streams per source IP address. A
// stream over the bound ends at once with ResourceExhausted, before any
// handler runs. The zero value is not usable: see NewSourceLimit.
type SourceLimit struct {
	max     int
	log     *slog.Logger
	refused prometheus.Counter

	mu   sync.Mutex
	open map[string]int
}

// NewSourceLimit returns a bound of max streams per source (max ≤ 0: no
// bound), registering its refusal counter with reg when reg is not nil.
func NewSourceLimit(max int, log *slog.Logger, reg prometheus.Registerer) (*SourceLimit, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &SourceLimit{max: max, log: log, open: map[string]int{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_xds_streams_refused_total",
			Help: "ADS streams refused because their source address already held the most allowed (--max-streams-per-source).",
		})}
	if reg != nil {
		if err := reg.Register(l.refused); err != nil {
			return nil, fmt.Errorf("register source limit metric: %w", err)
		}
	}
	return l, nil
}

// ServerOption installs the bound as a stream interceptor.
func (l *SourceLimit) ServerOption() grpc.ServerOption {
	return grpc.ChainStreamInterceptor(l.intercept)
}

func (l *SourceLimit) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if l.max <= 0 {
		return handler(srv, ss)
	}
	src := sourceKey(streamIP(ss.Context()))
	if !l.acquire(src) {
		l.refused.Inc()
		l.log.Warn("stream refused: its source holds the most streams allowed", "source", src, "max", l.max)
		return status.Errorf(codes.ResourceExhausted, "wasmxds: %s already holds %d streams, the most allowed per source", src, l.max)
	}
	defer l.release(src)
	return handler(srv, ss)
}

func (l *SourceLimit) acquire(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src] >= l.max {
		return false
	}
	l.open[src]++
	return true
}

func (l *SourceLimit) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// sourceKey is the source a bound per source counts an address against:
// an IPv4 address itself, an IPv6 address's /64, the smallest block a
// single host is commonly given (a client holding a /64 could otherwise
// take a new address for every stream).
func sourceKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is4() || addr.IsLoopback() {
		return addr.String()
	}
	p, err := addr.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

package bootstrap

import (
	"cmp"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// metricsSinkName is Envoy's metrics service stat sink.
const metricsSinkName = "envoy.stat_sinks.metrics_service"

// statsSink is the stat sink that streams Envoy's stats to wasmxds
// (envoy.service.metrics.v3.MetricsService) through the ADS cluster, so
// over the same connection and TLS, and the flush interval (0: the
// default); none with NoTelemetry. Counters are sent as deltas since the last flush, and
// under their full names (http.<listener>.downstream_rq_5xx), which is what
// wasmxds reads.
func statsSink(o Options) ([]*metricsv3.StatsSink, *durationpb.Duration, error) {
	if o.NoTelemetry {
		return nil, nil, nil
	}
	flush := cmp.Or(o.StatsFlushInterval, DefaultStatsFlushInterval)
	if flush < time.Millisecond || flush >= 5*time.Minute {
		return nil, nil, fmt.Errorf("--stats-flush-interval %v: want at least 1ms and under 5m", o.StatsFlushInterval)
	}
	cfg, err := xds.PackValid(&metricsv3.MetricsServiceConfig{
		TransportApiVersion:    corev3.ApiVersion_V3,
		ReportCountersAsDeltas: wrapperspb.Bool(true),
		EmitTagsAsLabels:       false,
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xds.XDSClusterName},
		}},
	})
	if err != nil {
		return nil, nil, err
	}
	sink := &metricsv3.StatsSink{Name: metricsSinkName, ConfigType: &metricsv3.StatsSink_TypedConfig{TypedConfig: cfg}}
	return []*metricsv3.StatsSink{sink}, durationpb.New(flush), nil
}

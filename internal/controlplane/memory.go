package controlplane

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/wasmxds/wasmxds/xds"
)

// Memory is handed back to the OS once the open streams fall to half
// their peak, if the peak was at least releaseMinStreams.
const (
	releaseMinStreams = 100
	releaseEvery      = 5 * time.Second
)

// releaseMemoryAfterDepartures runs until ctx ends.
func releaseMemoryAfterDepartures(ctx context.Context, srv *xds.Server, log *slog.Logger) {
	tick := time.NewTicker(releaseEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		open, peak := srv.Streams(false)
		if peak < releaseMinStreams || open > peak/2 {
			continue
		}
		srv.Streams(true)
		// The first cycle moves pooled buffers (gRPC, protobuf) to
		// sync.Pool's victim cache; only the second frees them.
		runtime.GC()
		debug.FreeOSMemory()
		log.Info("returned free memory to the OS after nodes left", "component", "serve",
			"streams", open, "peak_streams", peak)
	}
}

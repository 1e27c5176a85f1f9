package controlplane

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// Memory is handed back to the OS once the open streams fall to half
// their peak, if the peak was at least releaseMinStreams; and once the heap
// holds more free memory than releaseMinFree and than half what is in use
// (a burst of label sets built and gone idle, a large edit translated),
// at most every releaseFreeGap. Go returns freed heap to the OS only
// slowly on its own, so RSS would stay at the burst's peak.
const (
	releaseMinStreams = 100
	releaseEvery      = 5 * time.Second
	releaseMinFree    = 64 << 20
	releaseFreeGap    = 15 * time.Second
)

// releaseMemoryAfterDepartures runs until ctx ends.
func releaseMemoryAfterDepartures(ctx context.Context, srv *xds.Server, log *slog.Logger) {
	tick := time.NewTicker(releaseEvery)
	defer tick.Stop()
	var lastFree time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if open, peak := srv.Streams(false); peak >= releaseMinStreams && open <= peak/2 {
				srv.Streams(true)
				release()
				log.Info("returned free memory to the OS after nodes left", "component", "serve",
					"streams", open, "peak_streams", peak)
				continue
			}
			if free, inUse := heapFree(); now.Sub(lastFree) >= releaseFreeGap && free > releaseMinFree && free > inUse/2 {
				lastFree = now
				release()
				log.Debug("returned free heap memory to the OS", "component", "serve", "free_bytes", free, "in_use_bytes", inUse)
			}
		}
	}
}

func release() {
	// The first cycle moves pooled buffers (gRPC, protobuf) to
	// sync.Pool's victim cache; only the second frees them.
	runtime.GC()
	debug.FreeOSMemory()
}

// heapFree reads, without stopping the world, the heap memory free but
// not yet returned to the OS and the memory in live objects.
func heapFree() (free, inUse uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0, 0
	}
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

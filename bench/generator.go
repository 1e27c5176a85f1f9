package bench

import (
	"runtime"
	"runtime/debug"
)

// generatorGCPercent is the load generator's GOGC while it drives a server
// in another process.
const generatorGCPercent = 400

// quietGenerator makes the load generator (this process) collect its
// garbage less often, for a benchmark whose server runs in another
// process: the two share the machine's cores, and the generator's own
// collections, which real Envoys would run on machines of their own, are
// not what the benchmark measures. Only the server's memory is measured,
// so the generator trades memory for CPU. The returned function restores
// the previous setting.
func quietGenerator() (restore func()) {
	old := debug.SetGCPercent(generatorGCPercent)
	return func() { debug.SetGCPercent(old) }
}

// settleGenerator collects the load generator's garbage between two phases
// of a benchmark, so that a collection the first left due does not run in
// the second: connecting a fleet leaves one due, which would otherwise
// compete with the server for the same cores during the first change.
func settleGenerator() { runtime.GC() }

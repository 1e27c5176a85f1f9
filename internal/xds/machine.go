package xds

// The delivery of one plugin's module to one node is a small state
// machine. Its phases and the events that move it (each the work of one
// method of deliveries):
//
//	event (method)                          from                      to
//	config with a new module sent (sent)    —                         sent
//	ACK that created the VM (acked)         any but failed-refused    running
//	ACK of a first module, download seen    any but failed-refused    warming
//	ACK of a first module, none seen        any but failed-refused    provisional
//	download seen (downloaded)              provisional, warming,     warming
//	                                        fetching after a first
//	NACK, a cache miss (nacked)             any                       fetching
//	NACK after the download, or too many    any                       failed
//
// A new module (another sha256) starts over at sent. A node's record goes
// with its last stream (forget).
//
// Why each exists, from what Envoy does:
//
//   - fetching: with nack_on_code_cache_miss, Envoy NACKs a config whose
//     module it has not cached and starts fetching it; the config is sent
//     again (marked, so that Envoy does not take it for the one it
//     rejected) once the module server has served the module.
//   - warming, provisional: a plugin's first module is sent without
//     nack_on_code_cache_miss so that Envoy fetches it as a listener warms
//     (no stand-in in front of traffic meanwhile), and then ACKs before the
//     VM exists. A node seen downloading the module is sent it again as a
//     swap, which Envoy creates from its cache before it answers; until
//     that is ACKed, the plugin is pending. A node not seen downloading it
//     had it cached, so its ACK came after the VM was made: it runs,
//     provisionally, since a download seen later (through a proxy, say)
//     puts it back to warming.
//   - failed: Envoy answers "Unable to create Wasm plugin" both for a cache
//     miss and for a VM that would not start; a NACK that comes after the
//     node downloaded the module (three times, since a busy Envoy may still
//     be reading a finished download), or after too many attempts, is a
//     refusal. The group then falls back to the plugin's last good config.
//
// What status shows of each phase is PluginStatus.State.

// phase is where one plugin's module stands on one node.
type phase int

const (
	phaseSent        phase = iota // sent, not answered yet
	phaseFetching                 // NACKed as not cached: Envoy is fetching it
	phaseWarming                  // a first module fetched as a listener warmed, its confirmation not ACKed yet
	phaseProvisional              // a first module ACKed with no download seen: created from Envoy's cache
	phaseRunning                  // ACKed with its VM created
	phaseFailed                   // refused: the VM did not load or start, or the module never loaded
)

var phaseNames = [...]string{"sent", "fetching", "warming", "provisional", "running", "failed"}

func (p phase) String() string { return phaseNames[p] }

// state is what status reports for a phase.
func (p phase) state() string {
	switch p {
	case phaseRunning, phaseProvisional:
		return PluginRunning
	case phaseFailed:
		return PluginFailed
	default:
		return PluginPending
	}
}

// enter moves the plugin to phase p; reason is kept for a failure only.
func (d *pluginDelivery) enter(p phase, reason string) {
	d.phase = p
	d.State = p.state()
	d.Reason = ""
	if p == phaseFailed {
		d.Reason = reason
	}
}

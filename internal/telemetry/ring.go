package telemetry

import "time"

// Window is how far back runtime health looks: counts are kept in
// slotCount slots of slotWidth, so a sum covers between Window-slotWidth
// and Window.
const (
	slotWidth = 5 * time.Second
	slotCount = 12
	Window    = slotWidth * slotCount
)

// maxDelta caps one reported increase: a counter delta beyond it is a
// client's mistake or a lie, and capping keeps sums far from overflow.
const maxDelta = 1 << 40

// series is one counter: its total since the node was first heard from,
// and its increases per slot over the last Window.
type series struct {
	total uint64
	slot  [slotCount]int64 // which slot (time / slotWidth) each entry holds
	val   [slotCount]uint64
}

func slotOf(t time.Time) int64 { return t.UnixNano() / int64(slotWidth) }

// add records an increase at now.
func (s *series) add(now time.Time, delta uint64) {
	delta = min(delta, maxDelta)
	s.total += delta
	n := slotOf(now)
	i := int(n % slotCount)
	if s.slot[i] != n {
		s.slot[i], s.val[i] = n, 0
	}
	s.val[i] += delta
}

// recent is the increase over the last Window before now.
func (s *series) recent(now time.Time) uint64 {
	n := slotOf(now)
	var sum uint64
	for i := range slotCount {
		if age := n - s.slot[i]; age >= 0 && age < slotCount {
			sum += s.val[i]
		}
	}
	return sum
}

// counterDelta turns a reported counter value (a delta: the bootstrap sets
// report_counters_as_deltas) into an increase, refusing what is not one.
func counterDelta(v float64) uint64 {
	if !(v > 0) { // NaN and negatives too
		return 0
	}
	if v >= maxDelta {
		return maxDelta
	}
	return uint64(v)
}

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
// and its increases per slot over the last Window. val is a ring: it holds
// the slots from last-slotCount+1 to last, slot k at k mod slotCount.
type series struct {
	total uint64
	last  int64 // the latest slot added to (time / slotWidth)
	val   [slotCount]uint64
}

func slotOf(t time.Time) int64 { return t.UnixNano() / int64(slotWidth) }

func ringIndex(slot int64) int { return int((slot%slotCount + slotCount) % slotCount) }

// add records an increase at now. An increase older than the slots kept
// counts in the total only.
func (s *series) add(now time.Time, delta uint64) {
	delta = min(delta, maxDelta)
	s.total += delta
	n := slotOf(now)
	if n > s.last {
		for k := max(s.last+1, n-slotCount+1); k <= n; k++ {
			s.val[ringIndex(k)] = 0
		}
		s.last = n
	} else if n <= s.last-slotCount {
		return
	}
	s.val[ringIndex(n)] += delta
}

// recent is the increase over the last Window before now.
func (s *series) recent(now time.Time) uint64 {
	n := slotOf(now)
	var sum uint64
	for k := max(n, s.last) - slotCount + 1; k <= min(n, s.last); k++ {
		sum += s.val[ringIndex(k)]
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

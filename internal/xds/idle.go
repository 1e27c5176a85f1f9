package xds

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Idle group expiry.
//
// A group whose last node left keeps its bookkeeping for GroupIdleTimeout,
// so that a node coming back finds what its group ran and refused. The
// expiry timer drops the groups whose timeout passed (see
// dropIdleGroupsLocked), and so does Update, so that every group of a
// fleet that left is gone once its timeout passed. A group going idle
// beyond MaxIdleGroups drops the longest idle. Neither is looked for as
// nodes connect or leave: with rollout buckets there are thousands of
// groups, and a fleet of 10,000 nodes connecting at once paid for 10,000
// scans of them.

// idleExpiry runs the drop of idle groups when the first of them expires,
// on the server's clock: one timer, set for the earliest expiry. Close
// stops it and waits for a drop that is running.
type idleExpiry struct {
	fire  func()
	clock clock.WithDelayedExecution

	mu      sync.Mutex
	closed  bool
	pending *idleTimer
	wg      sync.WaitGroup
	// running counts the expiries started and not yet returned (see
	// repusher.running).
	running atomic.Int32
}

type idleTimer struct {
	t  clock.Timer
	at time.Time
}

func newIdleExpiry(clk clock.WithDelayedExecution, fire func()) *idleExpiry {
	return &idleExpiry{fire: fire, clock: clk}
}

// arm runs the expiry at at, unless one is already due sooner.
func (e *idleExpiry) arm(at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if cur := e.pending; cur != nil {
		if !cur.at.After(at) {
			return
		}
		if !cur.t.Stop() {
			return // firing now: it arms again for the groups it leaves
		}
		e.wg.Done()
	}
	it := &idleTimer{at: at}
	e.wg.Add(1)
	e.pending = it
	it.t = e.clock.AfterFunc(max(at.Sub(e.clock.Now()), 0), func() {
		e.running.Add(1)
		go func() {
			defer e.wg.Done()
			defer e.running.Add(-1)
			e.mu.Lock()
			run := !e.closed && e.pending == it
			if run {
				e.pending = nil // a group going idle from now on arms anew
			}
			e.mu.Unlock()
			if run {
				e.fire()
			}
		}()
	})
}

func (e *idleExpiry) close() {
	e.mu.Lock()
	e.closed = true
	if e.pending != nil && e.pending.t.Stop() {
		e.wg.Done()
	}
	e.pending = nil
	e.mu.Unlock()
	e.wg.Wait()
}

// wentIdleLocked marks g idle from now, its last node gone, and arms the
// expiry for it. The caller holds mu.
func (s *Server) wentIdleLocked(g *group) {
	g.idleSince = s.clock.Now()
	s.idleHeld = true
	s.idleGroups++
	s.idle.arm(s.idleExpiresAt(g.idleSince))
	if s.idleGroups > s.maxIdle {
		s.dropIdleGroupsLocked(g.idleSince) // one idle group too many
	}
}

// idleExpiresAt is the first instant at which a group idle since then is
// dropped: dropIdleGroupsLocked drops those idle for longer than the
// timeout.
func (s *Server) idleExpiresAt(since time.Time) time.Time {
	return since.Add(s.idleTimeout + time.Nanosecond)
}

// expireIdle drops the groups whose idle timeout passed and arms the expiry
// for the next one to go.
func (s *Server) expireIdle() {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	s.dropIdleGroupsLocked(s.clock.Now())
	var next time.Time
	for _, g := range s.groups {
		if g.nodes == 0 && (next.IsZero() || g.idleSince.Before(next)) {
			next = g.idleSince
		}
	}
	s.mu.Unlock()
	if !next.IsZero() {
		s.idle.arm(s.idleExpiresAt(next))
	}
}

// releaseIdleLocked gives back the snapshot of every group no node uses:
// an idle group keeps only its bookkeeping (what its nodes ran and
// refused), and is built again, to the same versions, when a node returns
// (see ensureGroup). Work shared by label sets no group uses any more goes
// too. The caller holds buildMu and mu.
func (s *Server) releaseIdleLocked() {
	inUse := map[string]bool{}
	for key, g := range s.groups {
		if g.nodes > 0 {
			inUse[g.labelsKey] = true
			continue
		}
		if g.versions != nil {
			s.cache.clear(key)
			g.versions, g.setAt, g.current = nil, nil, nil
		}
	}
	if s.shared != nil {
		s.shared.retain(inUse)
	}
	s.idleHeld = false
}

// activeGroupsLocked returns the keys of the groups with a connected node,
// sorted.
func (s *Server) activeGroupsLocked() []string {
	var keys []string
	for key, g := range s.groups {
		if g.nodes > 0 {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// dropIdleGroupsLocked forgets label sets no node has used for a while, and
// the longest idle beyond MaxIdleGroups, so the cache does not grow with
// every label set ever seen.
func (s *Server) dropIdleGroupsLocked(now time.Time) {
	var idle []string
	for key, g := range s.groups {
		if g.nodes > 0 {
			continue
		}
		if now.Sub(g.idleSince) > s.idleTimeout {
			s.dropGroupLocked(key, "idle timeout")
			continue
		}
		idle = append(idle, key)
	}
	if excess := len(idle) - s.maxIdle; excess > 0 {
		slices.SortFunc(idle, func(a, b string) int {
			return s.groups[a].idleSince.Compare(s.groups[b].idleSince)
		})
		for _, key := range idle[:excess] {
			s.dropGroupLocked(key, "too many idle groups")
		}
	}
	s.metrics.nodeGroups.Set(float64(len(s.groups)))
}

func (s *Server) dropGroupLocked(key, why string) {
	if g := s.groups[key]; g != nil && g.nodes == 0 {
		s.idleGroups--
	}
	s.cache.clear(key)
	delete(s.groups, key)
	s.metrics.groupsDropped.Inc()
	s.log.Info("dropped idle node group", "group", key, "reason", why)
}

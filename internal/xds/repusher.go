package xds

import (
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Re-push timers: at most one pending per (group, plugin) and kind, run on
// the server's clock.

// repushKey is one plugin's extension config in one group's snapshot;
// settle marks the push that drops the attempt mark again.
type repushKey struct {
	group, plugin string
	settle        bool
	// refresh rebuilds the group as it is, with no attempt mark: it
	// learnt of a refusal in its label set, or may now take a rollout.
	refresh bool
	// confirm sends the group's unconfirmed first module of the plugin
	// again as a swap (see confirm.go).
	confirm bool
}

// repusher runs delayed re-pushes, at most one pending per key, on the
// server's clock. A re-push due at once runs on a goroutine of its own
// right away (a fake clock would hold a zero-delay timer until stepped).
// Close stops them and waits for any that is running.
type repusher struct {
	fire  func(repushKey)
	clock clock.WithDelayedExecution

	mu     sync.Mutex
	closed bool
	timers map[repushKey]*repushTimer
	wg     sync.WaitGroup
	// running counts the re-pushes that are due: started on a goroutine
	// and not yet returned. A timer's function only counts and starts the
	// goroutine: a fake clock calls it with its own lock held.
	running atomic.Int32
}

type repushTimer struct {
	t   clock.Timer // nil for a re-push due at once
	at  time.Time
	sha string // the module the re-push is for
}

func newRepusher(clk clock.WithDelayedExecution, fire func(repushKey)) *repusher {
	return &repusher{fire: fire, clock: clk, timers: map[repushKey]*repushTimer{}}
}

// schedule re-pushes k after the delay, unless one is already due sooner.
func (r *repusher) schedule(k repushKey, sha string, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	at := r.clock.Now().Add(after)
	if cur := r.timers[k]; cur != nil {
		if !cur.at.After(at) {
			cur.sha = sha
			return
		}
		if cur.t == nil || !cur.t.Stop() {
			return // firing now; the re-push it makes is at least as early
		}
		r.wg.Done()
	}
	rt := &repushTimer{at: at, sha: sha}
	r.wg.Add(1)
	r.timers[k] = rt
	if after <= 0 {
		r.start(k, rt)
		return
	}
	rt.t = r.clock.AfterFunc(after, func() { r.start(k, rt) })
}

// start runs a due re-push on a goroutine of its own.
func (r *repusher) start(k repushKey, rt *repushTimer) {
	r.running.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.running.Add(-1)
		r.mu.Lock()
		run := !r.closed && r.timers[k] == rt
		if run {
			delete(r.timers, k)
		}
		r.mu.Unlock()
		if run {
			r.fire(k)
		}
	}()
}

// served brings forward the re-pushes waiting for module sha, which a node
// just finished downloading.
func (r *repusher) served(sha string) {
	r.mu.Lock()
	var due []repushKey
	for k, rt := range r.timers {
		if rt.sha == sha {
			due = append(due, k)
		}
	}
	r.mu.Unlock()
	for _, k := range due {
		r.schedule(k, sha, downloadSettle)
	}
}

func (r *repusher) close() {
	r.mu.Lock()
	r.closed = true
	for k, rt := range r.timers {
		if rt.t != nil && rt.t.Stop() {
			r.wg.Done()
		}
		delete(r.timers, k)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

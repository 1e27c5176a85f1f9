package xds

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// The repusher replayed on a fake clock: each key's re-push fires once, at
// the earliest time asked for; a re-push due at once needs no clock step;
// a download brings waiting ones forward; Close stops what is pending.
func TestRepusherFollowsTheClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(testEpoch)
	fired := make(chan repushKey, 8)
	r := newRepusher(clk, func(k repushKey) { fired <- k })
	defer r.close()
	// expect waits for the re-pushes of keys, in that order, and checks
	// that nothing else fired once they returned.
	expect := func(what string, keys ...repushKey) {
		t.Helper()
		for _, want := range keys {
			select {
			case got := <-fired:
				if got != want {
					t.Fatalf("%s: re-push of %+v, want %+v", what, got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no re-push of %+v", what, want)
			}
		}
		waitFor(t, "the re-pushes to return", func() bool { return r.running.Load() == 0 })
		select {
		case got := <-fired:
			t.Fatalf("%s: re-push of %+v too", what, got)
		default:
		}
	}
	a, b, c := repushKey{group: "g", plugin: "a"}, repushKey{group: "g", plugin: "b"}, repushKey{group: "g", plugin: "c"}

	r.schedule(a, "sha-a", time.Second)
	r.schedule(b, "sha-b", 2*time.Second)
	r.schedule(a, "sha-a", 3*time.Second) // later than the one pending: no change
	r.schedule(c, "", 0)
	expect("a re-push due at once", c)

	clk.Step(time.Second - time.Nanosecond)
	expect("just before the first is due")
	clk.Step(time.Nanosecond)
	expect("a second in", a)

	r.served("sha-b") // b's module downloaded: b waits only downloadSettle more
	clk.Step(downloadSettle)
	expect("after the download settled", b)

	r.schedule(a, "sha-a", time.Minute)
	r.schedule(a, "sha-a", time.Second) // sooner: replaces it
	clk.Step(time.Second)
	expect("the sooner of two", a)
	clk.Step(time.Minute)
	expect("the later of two")

	r.schedule(b, "sha-b", time.Second)
	r.close()
	clk.Step(time.Hour)
	expect("after Close")
	if clk.HasWaiters() {
		t.Errorf("Close left %d timers on the clock", clk.Waiters())
	}
}

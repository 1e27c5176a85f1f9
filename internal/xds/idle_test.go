package xds

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// waitIdle waits until the group of key has no node left (and so has its
// expiry armed).
func waitIdle(t *testing.T, srv *Server, key string) {
	t.Helper()
	waitFor(t, "group "+key+" idle", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		g := srv.groups[key]
		return g != nil && g.nodes == 0
	})
}

// groupsLeft waits for the engine to be done with what the clock fired
// and returns the groups it keeps.
func groupsLeft(t *testing.T, srv *Server) map[string]bool {
	t.Helper()
	waitFor(t, "the idle expiry to run", func() bool {
		busy, _ := srv.engineState()
		return !busy
	})
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := map[string]bool{}
	idle := 0
	for key, g := range srv.groups {
		out[key] = true
		if g.nodes == 0 {
			idle++
		}
	}
	if srv.idleGroups != idle {
		t.Errorf("the server counts %d idle groups, %d have no node", srv.idleGroups, idle)
	}
	return out
}

// Every group of a fleet that left is gone once its idle timeout passed,
// with nothing else happening (no Update, no node), each at its own time;
// a node that came back in time keeps its group.
func TestDepartedFleetsGroupsExpire(t *testing.T) {
	srv, addr, reg := startServer(t, ServerOptions{GroupIdleTimeout: time.Minute})
	clk := fakeClock(t, srv)
	srv.Update(testInput(8080, DeliveryLDS))
	type member struct {
		id     string
		labels map[string]string
		key    string
		c      *xdstest.Client
	}
	var fleet []*member
	for i, app := range []string{"a", "a", "b", "c"} {
		m := &member{id: fmt.Sprintf("n-%d", i), labels: map[string]string{"app": app}}
		m.key = nodeGroupKey(m.id, m.labels)
		m.c = connectEnvoy(t, addr, m.id, m.labels, i%2 == 1)
		m.c.Await(t, "config", xdstest.Complete)
		fleet = append(fleet, m)
	}
	if len(groupsLeft(t, srv)) != len(fleet) {
		t.Fatalf("groups = %v, want one per node (the two nodes of app=a are in different buckets)", groupsLeft(t, srv))
	}
	// The fleet leaves, a node every 20 seconds.
	for i, m := range fleet {
		if i > 0 {
			clk.Step(20 * time.Second)
		}
		m.c.Close()
		waitIdle(t, srv, m.key)
	}
	// A minute after the first left (as the last leaves): only its group
	// is gone.
	clk.SetTime(testEpoch.Add(time.Minute + time.Nanosecond))
	left := groupsLeft(t, srv)
	if left[fleet[0].key] || !left[fleet[1].key] || !left[fleet[2].key] || !left[fleet[3].key] {
		t.Errorf("a minute after the first node left, groups = %v, want all but %s", left, fleet[0].key)
	}
	// The second node comes back in time: its group stays while it is
	// connected, and goes a minute after it leaves again.
	back := connectEnvoy(t, addr, fleet[1].id, fleet[1].labels, false)
	back.Await(t, "config", xdstest.Complete)
	clk.SetTime(testEpoch.Add(100*time.Second + time.Nanosecond))
	left = groupsLeft(t, srv)
	if len(left) != 2 || !left[fleet[1].key] || !left[fleet[3].key] {
		t.Errorf("100s in, groups = %v, want %s (connected again) and %s (idle for 40s)", left, fleet[1].key, fleet[3].key)
	}
	back.Close()
	waitIdle(t, srv, fleet[1].key)
	clk.Step(time.Minute + time.Nanosecond)
	if left = groupsLeft(t, srv); len(left) != 0 {
		t.Errorf("a minute after the last node left, groups = %v, want none", left)
	}
	if got := gaugeValue(t, reg, "wasmxds_xds_node_groups"); got != 0 {
		t.Errorf("node groups = %v, want 0", got)
	}
	if got := testutil.ToFloat64(srv.metrics.groupsDropped); got != float64(len(fleet)) {
		t.Errorf("groups dropped = %v, want %d", got, len(fleet))
	}
}

// Beyond MaxIdleGroups, the group idle longest goes as soon as another
// goes idle, before any timeout; the groups still in use stay whatever
// their number, and a group back in use no longer counts as idle.
func TestIdleGroupsBeyondTheBoundGoLongestIdleFirst(t *testing.T) {
	srv, addr, _ := startServer(t, ServerOptions{GroupIdleTimeout: time.Hour, MaxIdleGroups: 2})
	clk := fakeClock(t, srv)
	srv.Update(testInput(8080, DeliveryLDS))
	var keys []string
	var clients []*xdstest.Client
	for i, app := range []string{"a", "b", "c", "d"} {
		id := fmt.Sprintf("n-%d", i)
		labels := map[string]string{"app": app}
		keys = append(keys, nodeGroupKey(id, labels))
		c := connectEnvoy(t, addr, id, labels, false)
		c.Await(t, "config", xdstest.Complete)
		clients = append(clients, c)
	}
	for i, c := range clients[:3] {
		if i > 0 {
			clk.Step(time.Second)
		}
		c.Close()
		waitIdle(t, srv, keys[i])
	}
	left := groupsLeft(t, srv)
	if len(left) != 3 || left[keys[0]] || !left[keys[1]] || !left[keys[2]] || !left[keys[3]] {
		t.Errorf("after three of four nodes left, groups = %v, want the two idle last (%s, %s) and the one in use (%s)",
			left, keys[1], keys[2], keys[3])
	}
	// The longest idle comes back; with three groups in use, more than
	// the bound, the one idle group stays.
	back := connectEnvoy(t, addr, "n-1", map[string]string{"app": "b"}, false)
	back.Await(t, "config", xdstest.Complete)
	more := connectEnvoy(t, addr, "n-4", map[string]string{"app": "e"}, false)
	more.Await(t, "config", xdstest.Complete)
	left = groupsLeft(t, srv)
	if len(left) != 4 || !left[keys[1]] || !left[keys[2]] || !left[keys[3]] {
		t.Errorf("with three groups in use and one idle, groups = %v, want %s, %s, %s and app=e's", left, keys[1], keys[2], keys[3])
	}
}

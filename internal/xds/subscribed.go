package xds

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Subscribed plugins: the extension configs each stream of a group asks
// for. Envoy subscribes to a plugin's filter config while a listener it
// holds names the filter, draining listeners included, and drops the
// subscription once none does. A plugin whose filter config no stream of
// the group subscribes to any more is gone from every Envoy of the group:
// when it comes back, on a listener that warms, it is a new plugin. So the
// group forgets what its nodes ran of it (forgetUnsubscribedLocked), and
// its module is sent as a first module and confirmed. Sent as a swap, its
// cache-miss NACK would end the listener's warming and put the failure
// policy's stand-in in front of traffic until the download and the
// re-push.
//
// While a stream still subscribes (a listener that dropped the plugin
// drains for Envoy's drain time, keeping the filter and its config; a
// listener update the node refused; an Envoy's own static listener naming
// the filter), the plugin is warm there, and a new module is a swap: sent
// as a first module to a warm filter config, Envoy would never fetch it.

// subscription is what one extension config request says of its stream's
// subscription: the whole set of names (state of the world), or the names
// it adds and drops (delta).
type subscription struct {
	whole bool
	names []string // whole: every name; delta: the names added
	drop  []string // delta: the names dropped
}

// wildcard is the name a request subscribes to every extension config
// with. Envoy never does: its extension config requests name what its
// listeners name, and one that names nothing (a stream that resumes after
// every filter config was dropped) subscribes to nothing.
const wildcard = "*"

// noteSubscriptionLocked records what an extension config request of a
// stream of group g says of the filter configs the stream subscribes to.
func noteSubscriptionLocked(g *group, key streamKey, sub subscription) {
	cur, seen := g.subscribed[key]
	switch {
	case sub.whole && seen && sameNames(cur, sub.names):
		return // most requests are ACKs of an unchanged subscription
	case sub.whole || !seen:
		cur = make(map[string]bool, len(sub.names))
		g.subscribed[key] = cur
	}
	for _, n := range sub.names {
		cur[n] = true
	}
	for _, n := range sub.drop {
		delete(cur, n)
	}
}

// noteListenersAckedLocked records that a stream of group g ACKed the
// listener version. When the group's listeners of that version name no
// extension config, the node asks for none: it subscribes to nothing.
// Without this, a node that joined while no listener named a plugin would
// never report, and the plugin would count as subscribed for its whole
// group. Listeners that name some are left to the extension config
// requests, which a delta Envoy may send after the ACK.
func noteListenersAckedLocked(g *group, key streamKey, version string) {
	if _, seen := g.subscribed[key]; seen || !g.filterless || version != g.versions[resource.ListenerType] {
		return
	}
	g.subscribed[key] = map[string]bool{}
}

// sameNames reports whether names are exactly the set cur.
func sameNames(cur map[string]bool, names []string) bool {
	for _, n := range names {
		if !cur[n] {
			return false
		}
	}
	for n := range cur {
		if !slices.Contains(names, n) {
			return false
		}
	}
	return true
}

// unsubscribedLocked reports whether no open stream of g subscribes to
// plugin's filter config. A group with no open stream, or with a stream
// that has not reported what it subscribes to yet (a node just back from a
// restart, say), may still have nodes that run the plugin: there it counts
// as subscribed.
func unsubscribedLocked(g *group, plugin string) bool {
	if g.nodes == 0 || len(g.subscribed) < g.nodes {
		return false
	}
	name := FilterNamePrefix + plugin
	for _, names := range g.subscribed {
		if names[name] || names[wildcard] {
			return false
		}
	}
	return true
}

// forgetUnsubscribedLocked forgets what the group's nodes ran of each
// plugin no stream of the group subscribes to any more: its last good
// configs, the first module it warmed with and its confirmation, the
// module nodes came with.
func forgetUnsubscribedLocked(g *group) {
	for _, plugins := range []map[string]string{g.warmed, g.held, g.unconfirmed, g.confirming} {
		for name := range plugins {
			if unsubscribedLocked(g, name) {
				forgetPluginLocked(g, name)
			}
		}
	}
	for name := range g.lastGood {
		if unsubscribedLocked(g, name) {
			forgetPluginLocked(g, name)
		}
	}
}

// forgetPluginLocked drops the group's records of plugin name.
func forgetPluginLocked(g *group, name string) {
	delete(g.lastGood, name)
	delete(g.warmed, name)
	delete(g.held, name)
	delete(g.unconfirmed, name)
	delete(g.confirming, name)
}

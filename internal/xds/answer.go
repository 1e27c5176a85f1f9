package xds

import (
	"slices"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// How the delivery cache answers a watch from a snapshot (the rules are
// listed in cache.go).

// outbox holds the answers decided under the cache's lock, to be sent
// together once every watch is decided: a snapshot set for thousands of
// watches first builds every answer and then wakes the streams in one
// short loop, so that the streams woken first do not take the CPU from
// the decisions left. Its sends still happen under the lock, so a watch
// cancelled after the lock is released is never answered.
type outbox struct {
	sotw  []sotwAnswer
	delta []deltaAnswer
}

type sotwAnswer struct {
	out  chan cache.Response
	resp cache.Response
}

type deltaAnswer struct {
	out  chan cache.DeltaResponse
	resp cache.DeltaResponse
}

// send delivers every answer, in the order decided.
func (o *outbox) send() {
	for _, a := range o.sotw {
		a.out <- a.resp
	}
	for _, a := range o.delta {
		a.out <- a.resp
	}
	*o = outbox{}
}

// answerSotW puts w's answer from snap in o if the rules above say so,
// and reports whether it did.
func answerSotW(o *outbox, w *sotwWatch, snap *servedSnapshot) bool {
	typeURL := w.req.GetTypeUrl()
	st := snap.types[typeURL]
	if st == nil {
		return false
	}
	if !w.anyVersion && w.holds == st.version && !missingFromStream(w.sub, st) {
		return false
	}
	names := w.req.GetResourceNames()
	if len(names) > 0 && !st.within(names) {
		// ADS: a named subscription is answered only once it names every
		// resource of the type (Envoy asks again as its listeners and
		// routes reference them).
		return false
	}
	resp := &discoverygrpc.DiscoveryResponse{VersionInfo: st.version, TypeUrl: typeURL}
	returned := make(map[string]string, len(st.items))
	want := nameSet(names)
	for _, r := range st.items {
		if want != nil && !want[r.name] {
			continue
		}
		resp.Resources = append(resp.Resources, r.any)
		returned[r.name] = st.version
	}
	o.sotw = append(o.sotw, sotwAnswer{w.out, &cache.PassthroughResponse{Request: w.req, DiscoveryResponse: resp, ReturnedResources: returned}})
	return true
}

// missingFromStream reports whether the subscription wants a resource of
// st its stream was not sent yet.
func missingFromStream(sub cache.Subscription, st *servedType) bool {
	known := sub.ReturnedResources()
	if sub.IsWildcard() {
		for _, r := range st.items {
			if _, ok := known[r.name]; !ok {
				return true
			}
		}
		return false
	}
	for name := range sub.SubscribedResources() {
		if _, ok := known[name]; !ok && st.byName[name] != nil {
			return true
		}
	}
	return false
}

// answerDelta puts in o what w's stream lacks of its type in snap, if
// anything (or if it is a wildcard subscription's first request), and
// reports whether it did.
func answerDelta(o *outbox, w *deltaWatch, snap *servedSnapshot) bool {
	typeURL := w.req.GetTypeUrl()
	st := snap.types[typeURL]
	if st == nil {
		st = &servedType{}
	}
	known := w.sub.ReturnedResources()
	next := map[string]string{}
	resp := &discoverygrpc.DeltaDiscoveryResponse{SystemVersionInfo: st.version, TypeUrl: typeURL}
	if w.sub.IsWildcard() {
		for _, r := range st.items {
			next[r.name] = r.version
			if prev, ok := known[r.name]; !ok || prev != r.version {
				resp.Resources = append(resp.Resources, r.delta)
			}
		}
		for name := range known {
			if st.byName[name] == nil {
				resp.RemovedResources = append(resp.RemovedResources, name)
			}
		}
	} else {
		for name := range w.sub.SubscribedResources() {
			prev, found := known[name]
			if r := st.byName[name]; r != nil {
				if prev != r.version {
					resp.Resources = append(resp.Resources, r.delta)
				}
				next[name] = r.version
			} else if found {
				resp.RemovedResources = append(resp.RemovedResources, name)
			}
		}
	}
	slices.Sort(resp.RemovedResources)
	if len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 && !(w.sub.IsWildcard() && w.req.GetResponseNonce() == "") {
		return false
	}
	o.delta = append(o.delta, deltaAnswer{w.out, &cache.DeltaPassthroughResponse{DeltaRequest: w.req, NextVersionMap: next, DeltaDiscoveryResponse: resp}})
	return true
}

func nameSet(names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
}

package xds

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// The delivery cache is the store go-control-plane's ADS server reads from:
// it holds each group's snapshot, marshaled once, and the open watches of
// the streams, and it decides when a watch is answered. It implements
// go-control-plane's cache.Cache so that the library keeps the protocol
// (streams, nonces, ordering of an ADS stream's types) while the decision
// of what a node is sent, and when, stays here and needs no request to be
// rewritten:
//
//   - A state-of-the-world watch is answered when the group's version of
//     its type differs from the version the node holds, or, on the same
//     version, when it subscribes to a resource not yet sent on its stream
//     (a new stream is answered once, with what the node already holds;
//     Envoy ignores an identical config).
//   - A NACK parks the watch until the type's version differs from the one
//     the node rejected: the request carries the last version it accepted,
//     and answering that would resend the rejected config at once, forever.
//     So do the stream's later requests of the type that still answer the
//     rejected response (same nonce): Envoy sends the error only once, and
//     then asks again, for other names, as its listeners warm.
//   - A watch for a type this server does not serve is never kept (a delta
//     wildcard's first request is answered at once, empty): a stream then
//     has at most one parked watch per served type, fewer than its response
//     channel holds, so answering them never blocks (set sends under the
//     cache's lock).
//   - A watch opened before its group has a snapshot (a node returning to a
//     restarted replica, or a group built again after going idle) is
//     answered as soon as the snapshot is set, whatever version the node
//     reported.
//   - A delta watch is answered with the resources whose version differs
//     from what its stream holds, and those removed, and the first request
//     of a wildcard subscription always, so that Envoy completes its
//     initialization.
//
// Which group a request reads is decided by the stream it came on: the
// request callback hands the cache each admitted request with its group
// (see direct), so the node a request names plays no part.

// errUnrouted ends a stream whose request reached the cache without being
// admitted; it cannot happen while the callbacks route every request.
var errUnrouted = errors.New("xds: request was not admitted on its stream")

// snapshotStore is what the Server needs of its delivery cache; in-package
// tests wrap it to hold calls.
type snapshotStore interface {
	cache.Cache
	setAll(sets []pendingSet)
	clear(group string)
	direct(key streamKey, req any, r routing)
	streamClosed(key streamKey)
}

// routing is what the request callback decided about a request: the group
// whose snapshot answers it, the version the node reports holding for its
// type, and for a NACK the version it rejected.
type routing struct {
	group    string
	holds    string
	rejected string
}

// nackMark is a stream's last NACK of a type: the version rejected and the
// nonce of the response it rejected.
type nackMark struct{ version, nonce string }

type deliveryCache struct {
	mu     sync.Mutex
	groups map[string]*cacheEntry
	// routed holds the routing of each admitted request until its watch is
	// created; byStream the last request routed per stream and type, so
	// that one the server skipped (a stale nonce) does not stay behind.
	routed   map[any]routing
	byStream map[streamKey]map[string]any
	nacks    map[streamKey]map[string]nackMark
}

// cacheEntry is one group's snapshot and the watches waiting on it.
type cacheEntry struct {
	snap  *servedSnapshot
	sotw  []*sotwWatch
	delta []*deltaWatch
}

type sotwWatch struct {
	req   *discoverygrpc.DiscoveryRequest
	sub   cache.Subscription
	out   chan cache.Response
	holds string
	// anyVersion: opened before the group had a snapshot, so it is
	// answered by the first one whatever version the node reported.
	anyVersion bool
	seen       seenVersion
}

type deltaWatch struct {
	req  *discoverygrpc.DeltaDiscoveryRequest
	sub  cache.Subscription
	out  chan cache.DeltaResponse
	seen seenVersion
}

// seenVersion is the version of its type a waiting watch was last held
// against. A type's version is a hash of its content and a watch's
// subscription does not change while it waits, so a snapshot with the same
// version of the type would not answer it either: set skips it. A group's
// change is most often one type (a plugin's config), and a large fleet has
// thousands of watches waiting on the others.
type seenVersion struct {
	version string
	ok      bool
}

// unchanged reports whether st is the version of the type w was last held
// against.
func (v seenVersion) unchanged(st *servedType) bool {
	return v.ok && st != nil && st.version == v.version
}

// seenOf is st as the version a watch was held against.
func seenOf(st *servedType) seenVersion {
	if st == nil {
		return seenVersion{}
	}
	return seenVersion{version: st.version, ok: true}
}

func newDeliveryCache() *deliveryCache {
	return &deliveryCache{groups: map[string]*cacheEntry{}, routed: map[any]routing{},
		byStream: map[streamKey]map[string]any{}, nacks: map[streamKey]map[string]nackMark{}}
}

var _ cache.Cache = (*deliveryCache)(nil)

// direct records where an admitted request of a stream goes; req is the
// *DiscoveryRequest or *DeltaDiscoveryRequest the server passes on to
// CreateWatch or CreateDeltaWatch next.
func (c *deliveryCache) direct(key streamKey, req any, r routing) {
	typeURL := requestType(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.byStream[key]
	if last == nil {
		last = map[string]any{}
		c.byStream[key] = last
	}
	if prev, ok := last[typeURL]; ok {
		delete(c.routed, prev)
	}
	last[typeURL] = req
	if sotw, ok := req.(*discoverygrpc.DiscoveryRequest); ok {
		r.holds = c.rejectedLocked(key, typeURL, sotw.GetResponseNonce(), r)
	}
	c.routed[req] = r
}

// rejectedLocked is the version a SotW request's watch compares with: the
// rejected one for a NACK, and for a later request still answering the
// rejected response; what the node holds otherwise.
func (c *deliveryCache) rejectedLocked(key streamKey, typeURL, nonce string, r routing) string {
	marks := c.nacks[key]
	if r.rejected != "" {
		if marks == nil {
			marks = map[string]nackMark{}
			c.nacks[key] = marks
		}
		marks[typeURL] = nackMark{version: r.rejected, nonce: nonce}
		return r.rejected
	}
	if m, ok := marks[typeURL]; ok {
		if m.nonce == nonce {
			return m.version
		}
		delete(marks, typeURL)
	}
	return r.holds
}

// streamClosed forgets the routing of a stream's requests.
func (c *deliveryCache) streamClosed(key streamKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, req := range c.byStream[key] {
		delete(c.routed, req)
	}
	delete(c.byStream, key)
	delete(c.nacks, key)
}

func requestType(req any) string {
	switch r := req.(type) {
	case *discoverygrpc.DiscoveryRequest:
		return r.GetTypeUrl()
	case *discoverygrpc.DeltaDiscoveryRequest:
		return r.GetTypeUrl()
	}
	return ""
}

// takeRoutingLocked returns and forgets the routing of req. The caller
// holds mu.
func (c *deliveryCache) takeRoutingLocked(req any) (routing, bool) {
	r, ok := c.routed[req]
	delete(c.routed, req)
	return r, ok
}

func (c *deliveryCache) entryLocked(group string) *cacheEntry {
	e := c.groups[group]
	if e == nil {
		e = &cacheEntry{}
		c.groups[group] = e
	}
	return e
}

// setAll sets the snapshots of many groups under one hold of the lock: a
// fleet-wide change sets thousands, and taking the lock for each would
// queue every one behind the ACKs of the streams the earlier ones woke.
func (c *deliveryCache) setAll(sets []pendingSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var o outbox
	for _, p := range sets {
		c.setLocked(&o, p.key, p.snap)
	}
	o.send()
}

// setLocked sets group's snapshot and puts the answers to its waiting
// watches in o.
func (c *deliveryCache) setLocked(o *outbox, group string, snap *servedSnapshot) {
	e := c.entryLocked(group)
	e.snap = snap
	waiting := e.sotw
	e.sotw = nil
	slices.SortStableFunc(waiting, func(a, b *sotwWatch) int {
		return cmp.Compare(typeOrder(a.req.GetTypeUrl()), typeOrder(b.req.GetTypeUrl()))
	})
	for _, w := range waiting {
		st := snap.types[w.req.GetTypeUrl()]
		if w.seen.unchanged(st) || !answerSotW(o, w, snap) {
			w.seen = seenOf(st)
			e.sotw = append(e.sotw, w)
		}
	}
	deltas := e.delta
	e.delta = nil
	slices.SortStableFunc(deltas, func(a, b *deltaWatch) int {
		return cmp.Compare(typeOrder(a.req.GetTypeUrl()), typeOrder(b.req.GetTypeUrl()))
	})
	for _, w := range deltas {
		st := snap.types[w.req.GetTypeUrl()]
		if w.seen.unchanged(st) || !answerDelta(o, w, snap) {
			w.seen = seenOf(st)
			e.delta = append(e.delta, w)
		}
	}
}

// clear drops the group's snapshot; its watches wait for the next one.
func (c *deliveryCache) clear(group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.groups[group]
	if e == nil {
		return
	}
	e.snap = nil
	if len(e.sotw) == 0 && len(e.delta) == 0 {
		delete(c.groups, group)
	}
}

func served(typeURL string) bool { return slices.Contains(servedTypes, typeURL) }

func typeOrder(typeURL string) int {
	if i := slices.Index(servedTypes, typeURL); i >= 0 {
		return i
	}
	return len(servedTypes)
}

// CreateWatch implements cache.ConfigWatcher for state-of-the-world
// requests.
func (c *deliveryCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.takeRoutingLocked(req)
	if !ok {
		return nil, errUnrouted
	}
	if !served(req.GetTypeUrl()) {
		return func() {}, nil // never answered: no watch to keep
	}
	e := c.entryLocked(r.group)
	w := &sotwWatch{req: req, sub: sub, out: out, holds: r.holds, anyVersion: e.snap == nil}
	if e.snap != nil {
		var o outbox
		if answerSotW(&o, w, e.snap) {
			o.send()
			return func() {}, nil
		}
		w.seen = seenOf(e.snap.types[req.GetTypeUrl()])
	}
	e.sotw = append(e.sotw, w)
	return func() { c.cancelSotW(r.group, w) }, nil
}

// CreateDeltaWatch implements cache.ConfigWatcher for delta requests.
func (c *deliveryCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.takeRoutingLocked(req)
	if !ok {
		return nil, errUnrouted
	}
	w := &deltaWatch{req: req, sub: sub, out: out}
	var o outbox
	if !served(req.GetTypeUrl()) {
		answerDelta(&o, w, &servedSnapshot{}) // a wildcard's first request, empty
		o.send()
		return nil, nil
	}
	e := c.entryLocked(r.group)
	if e.snap != nil {
		if answerDelta(&o, w, e.snap) {
			o.send()
			return nil, nil
		}
		w.seen = seenOf(e.snap.types[req.GetTypeUrl()])
	}
	e.delta = append(e.delta, w)
	return func() { c.cancelDelta(r.group, w) }, nil
}

// Fetch implements cache.ConfigFetcher: REST polling is not served.
func (c *deliveryCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xds: REST fetch is not served; use ADS")
}

func (c *deliveryCache) cancelSotW(group string, w *sotwWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.groups[group]; e != nil {
		e.sotw = slices.DeleteFunc(e.sotw, func(x *sotwWatch) bool { return x == w })
		c.dropIfUnusedLocked(group, e)
	}
}

func (c *deliveryCache) cancelDelta(group string, w *deltaWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.groups[group]; e != nil {
		e.delta = slices.DeleteFunc(e.delta, func(x *deltaWatch) bool { return x == w })
		c.dropIfUnusedLocked(group, e)
	}
}

func (c *deliveryCache) dropIfUnusedLocked(group string, e *cacheEntry) {
	if e.snap == nil && len(e.sotw) == 0 && len(e.delta) == 0 {
		delete(c.groups, group)
	}
}

package xds

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"k8s.io/utils/clock"
)

// streamKey identifies a stream; SotW and delta streams are numbered
// independently by go-control-plane, so the kind is part of the key.
type streamKey struct {
	delta bool
	id    int64
}

type streamState struct {
	opened   time.Time
	identity string // the client certificate's identity, "" without one
	ip       string // where the stream comes from, "" if unknown
	refused  bool
	ended    error      // with refused: the error that ends the stream
	stream   *revocable // nil when the gRPC server lacks the interceptor
	attached bool       // the first request (carrying the node) was seen
	node     *corev3.Node
	nodeID   string
	group    string
	inflight map[string]sentResponse // per type URL: the response awaiting (N)ACK
}

// sentResponse pairs a nonce with its version: a delta ACK carries no
// version and a SotW NACK carries the previous one, so the nonce is the only
// reliable link to what was accepted or rejected.
type sentResponse struct {
	nonce   string
	version string
}

// tracker follows every stream and node: what was sent, ACKed and NACKed.
// It knows nothing of snapshots; the server asks it who is connected.
type tracker struct {
	clock   clock.PassiveClock
	mu      sync.Mutex
	streams map[streamKey]*streamState
	nodes   map[string]*NodeStatus
	denials []NodeDenial // the latest, newest last, at most maxDenials
	// peak is the most streams open at once since it was last reset.
	peak int
}

func newTracker(clk clock.PassiveClock) *tracker {
	return &tracker{clock: clk, streams: map[streamKey]*streamState{}, nodes: map[string]*NodeStatus{}}
}

// attachment is a node newly attached to a stream.
type attachment struct {
	nodeID, cluster, group, ip string
	identity                   string
	labels                     map[string]string
	ignored                    []string
}

// ack is an ACK that matched the response it answers.
type ack struct {
	group, typeURL, version string
	opened                  time.Time
}

func (t *tracker) open(key streamKey, identity, ip string, stream *revocable) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[key] = &streamState{opened: t.clock.Now(), identity: identity, ip: ip, stream: stream,
		inflight: map[string]sentResponse{}}
	t.peak = max(t.peak, len(t.streams))
}

// close forgets a stream and returns its group, if it had attached, and
// whether that was the node's last stream.
func (t *tracker) close(key streamKey) (group, nodeID string, attached, gone bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	delete(t.streams, key)
	if st == nil || !st.attached {
		return "", "", false, false
	}
	if n := t.nodes[st.nodeID]; n != nil {
		if n.Streams--; n.Streams == 0 {
			delete(t.nodes, st.nodeID)
			gone = true
		}
	}
	return st.group, st.nodeID, true, gone
}

// pending returns a stream's identity, whether its node is still to be
// admitted and, for a refused stream, the error that ends it.
func (t *tracker) pending(key streamKey) (string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil {
		return "", false, errUnknownStream // fail closed: never serve a stream not opened here
	}
	return st.identity, !st.attached && !st.refused, st.ended
}

// deny marks a stream denied, to be ended with end, and keeps the denial
// for status.
func (t *tracker) deny(key streamKey, r NodeDenial, end error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.streams[key]; st != nil {
		st.refused, st.ended = true, end
	}
	t.denials = append(t.denials, r)
	if len(t.denials) > maxDenials {
		t.denials = slices.Delete(t.denials, 0, len(t.denials)-maxDenials)
	}
}

// denied returns the latest node denials, newest last.
func (t *tracker) denied() []NodeDenial {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.denials)
}

// attach records the node behind a stream on its first request; it
// returns nil when the stream had already attached or is unknown.
func (t *tracker) attach(key streamKey, node *corev3.Node) *attachment {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil || st.attached || st.refused {
		return nil
	}
	labels, ignored := nodeLabels(node)
	a := &attachment{nodeID: node.GetId(), cluster: node.GetCluster(), group: nodeGroupKey(node.GetId(), labels),
		labels: labels, ignored: ignored, ip: st.ip}
	st.attached, st.node, st.nodeID, st.group = true, node, a.nodeID, a.group
	n := t.nodes[a.nodeID]
	if n == nil {
		n = &NodeStatus{Connected: st.opened, Types: map[string]TypeStatus{}}
		t.nodes[a.nodeID] = n
	}
	n.ID, n.Cluster, n.Labels, n.IgnoredLabels, n.Group = a.nodeID, a.cluster, labels, ignored, a.group
	n.Identity = st.identity
	n.Delta = key.delta
	n.Streams++
	return a
}

// attachedStreams returns the streams whose node was admitted and is not
// refused since, in no particular order.
func (t *tracker) attachedStreams() []attachedStream {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []attachedStream
	for key, st := range t.streams {
		if st.attached && !st.refused {
			out = append(out, attachedStream{key: key, identity: st.identity, node: st.node, stream: st.stream})
		}
	}
	return out
}

// request records an ACK, or returns a NACK for the caller to record with
// setLastNack unless it was expected. It returns the NACK (nil for an ACK),
// the ACK that matched a sent response (nil otherwise), the node and its
// group.
func (t *tracker) request(key streamKey, typeURL, version, nonce string, errDetail *status.Status) (*Nack, *ack, string, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil || t.nodes[st.nodeID] == nil {
		return nil, nil, "", ""
	}
	n := t.nodes[st.nodeID]
	ts := n.Types[typeURL]
	sent, matched := st.inflight[typeURL]
	matched = matched && sent.nonce == nonce && nonce != ""
	if matched {
		delete(st.inflight, typeURL)
	}
	var acked *ack
	switch {
	case errDetail != nil:
		nack := &Nack{TypeURL: typeURL, Error: truncate(errDetail.GetMessage(), MaxNackDetail), Time: t.clock.Now()}
		if matched {
			nack.Version = sent.version
		}
		return nack, nil, st.nodeID, st.group
	case matched:
		ts.Acked = sent.version
		acked = &ack{group: st.group, typeURL: typeURL, version: sent.version, opened: st.opened}
	case nonce == "" && version != "":
		// A reconnecting SotW Envoy reports the version it already runs;
		// versions are content hashes, so it is meaningful here too.
		ts.Acked = version
	}
	n.Types[typeURL] = ts
	return nil, acked, st.nodeID, st.group
}

// setLastNack records a node's NACK.
func (t *tracker) setLastNack(nodeID string, nack *Nack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[nodeID]; n != nil {
		copied := *nack
		n.LastNack = &copied
	}
}

// response records a response sent on a stream; it returns the node's id
// and group, and false for a revoked stream (whose responses are not sent,
// see revocable).
func (t *tracker) response(key streamKey, typeURL, nonce, version string) (string, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[key]
	if st == nil {
		return "", "", true
	}
	if st.refused && st.stream != nil {
		return st.nodeID, st.group, false
	}
	st.inflight[typeURL] = sentResponse{nonce: nonce, version: version}
	if n := t.nodes[st.nodeID]; n != nil {
		ts := n.Types[typeURL]
		ts.Sent = version
		n.Types[typeURL] = ts
	}
	return st.nodeID, st.group, true
}

// status returns every connected node, sorted by id, as copies.
func (t *tracker) status() []NodeStatus {
	out := t.copyNodes()
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// copyNodes copies every node's status under the lock, which every
// request of every stream takes: a node's labels are replaced as a whole
// when it attaches, never changed in place, so they are shared; only what
// requests and responses change is copied. Sorting is left to the caller,
// outside the lock.
func (t *tracker) copyNodes() []NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]NodeStatus, 0, len(t.nodes))
	for _, n := range t.nodes {
		st := *n
		st.Types = maps.Clone(st.Types)
		if st.LastNack != nil {
			nack := *st.LastNack
			st.LastNack = &nack
		}
		out = append(out, st)
	}
	return out
}

// nodeIDs returns the ids of the connected nodes, in no particular order.
func (t *tracker) nodeIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Collect(maps.Keys(t.nodes))
}

// members returns the ids of the connected nodes of a group.
func (t *tracker) members(group string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, n := range t.nodes {
		if n.Group == group {
			ids = append(ids, id)
		}
	}
	return ids
}

// counts returns the open streams, the peak since the last reset and the
// connected nodes; reset starts a new peak at the current count.
func (t *tracker) counts(reset bool) (open, peak, nodes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	open, peak, nodes = len(t.streams), t.peak, len(t.nodes)
	if reset {
		t.peak = open
	}
	return open, peak, nodes
}

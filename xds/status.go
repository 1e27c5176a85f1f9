package xds

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
)

// NodeStatus is what the server knows about one connected Envoy.
type NodeStatus struct {
	ID      string            `json:"id"`
	Cluster string            `json:"cluster"`
	Labels  map[string]string `json:"labels"`
	// Group is the label-set key the node's snapshot is shared under.
	Group string `json:"group"`
	// Connected is when the node's oldest open stream opened.
	Connected time.Time `json:"connected"`
	Delta     bool      `json:"delta"` // incremental (delta) xDS
	Streams   int       `json:"streams"`
	// Types holds, per type URL, the last version sent and ACKed.
	Types    map[string]TypeStatus `json:"types"`
	LastNack *Nack                 `json:"lastNack,omitempty"`
}

// TypeStatus is one resource type's delivery state on a node.
type TypeStatus struct {
	Sent  string `json:"sent"`
	Acked string `json:"acked"`
}

// Nack is the last configuration a node rejected.
type Nack struct {
	TypeURL string    `json:"typeUrl"`
	Version string    `json:"version"` // the rejected version, empty if unknown
	Error   string    `json:"error"`   // Envoy's error_detail message
	Time    time.Time `json:"time"`
}

// streamKey identifies a stream; SotW and delta streams are numbered
// independently by go-control-plane, so the kind is part of the key.
type streamKey struct {
	delta bool
	id    int64
}

type streamState struct {
	opened   time.Time
	attached bool // the first request (carrying the node) was seen
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

type nodeState struct {
	status NodeStatus
}

// Status returns every connected node, sorted by id.
func (s *Server) Status() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeStatus, 0, len(s.nodes))
	for _, id := range slices.Sorted(maps.Keys(s.nodes)) {
		st := s.nodes[id].status
		st.Labels = maps.Clone(st.Labels)
		st.Types = maps.Clone(st.Types)
		if st.LastNack != nil {
			nack := *st.LastNack
			st.LastNack = &nack
		}
		out = append(out, st)
	}
	return out
}

var _ serverv3.Callbacks = (*Server)(nil)

// OnStreamOpen implements serverv3.Callbacks.
func (s *Server) OnStreamOpen(_ context.Context, id int64, _ string) error {
	s.openStream(streamKey{id: id})
	return nil
}

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (s *Server) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	s.openStream(streamKey{delta: true, id: id})
	return nil
}

// OnStreamClosed implements serverv3.Callbacks.
func (s *Server) OnStreamClosed(id int64, _ *corev3.Node) { s.closeStream(streamKey{id: id}) }

// OnDeltaStreamClosed implements serverv3.Callbacks.
func (s *Server) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	s.closeStream(streamKey{delta: true, id: id})
}

// OnStreamRequest implements serverv3.Callbacks.
func (s *Server) OnStreamRequest(id int64, req *discoverygrpc.DiscoveryRequest) error {
	rejected := s.onRequest(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetVersionInfo(),
		req.GetResponseNonce(), req.GetErrorDetail())
	if rejected != "" {
		// A SotW NACK carries the last accepted version, which differs from
		// the snapshot's, so the cache would resend the rejected config at
		// once, forever. Presenting the rejected version parks the watch
		// until the snapshot changes.
		req.VersionInfo = rejected
	}
	return nil
}

// OnStreamDeltaRequest implements serverv3.Callbacks.
func (s *Server) OnStreamDeltaRequest(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	// Delta needs no NACK handling: the cache compares per-resource
	// versions with what it sent, so a rejected config is not resent.
	s.onRequest(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), "",
		req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

// OnStreamResponse implements serverv3.Callbacks.
func (s *Server) OnStreamResponse(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	s.onResponse(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

// OnStreamDeltaResponse implements serverv3.Callbacks.
func (s *Server) OnStreamDeltaResponse(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
	s.onResponse(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest implements serverv3.Callbacks; REST fetches are not served.
func (s *Server) OnFetchRequest(context.Context, *discoverygrpc.DiscoveryRequest) error { return nil }

// OnFetchResponse implements serverv3.Callbacks.
func (s *Server) OnFetchResponse(*discoverygrpc.DiscoveryRequest, *discoverygrpc.DiscoveryResponse) {
}

func (s *Server) openStream(key streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[key] = &streamState{opened: time.Now(), inflight: map[string]sentResponse{}}
}

func (s *Server) closeStream(key streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	delete(s.streams, key)
	if st == nil || !st.attached {
		return
	}
	if g := s.groups[st.group]; g != nil {
		if g.nodes--; g.nodes == 0 {
			g.idleSince = time.Now()
		}
	}
	if n := s.nodes[st.nodeID]; n != nil {
		if n.status.Streams--; n.status.Streams == 0 {
			delete(s.nodes, st.nodeID)
			s.log.Info("node disconnected", "node", st.nodeID, "group", st.group)
		}
	}
	s.metrics.connectedNodes.Set(float64(len(s.nodes)))
}

// attach records the node behind a stream on its first request and makes
// sure its group has a snapshot before the request's watch is created.
func (s *Server) attach(key streamKey, node *corev3.Node) {
	s.mu.Lock()
	st := s.streams[key]
	if st == nil || st.attached {
		s.mu.Unlock()
		return
	}
	labels := NodeLabels(node)
	gkey := GroupKey(labels)
	st.attached, st.nodeID, st.group = true, node.GetId(), gkey
	// Connections are a natural moment to forget label sets gone idle,
	// since Update may not run for a long time when nothing changes.
	s.dropIdleGroupsLocked(time.Now())
	g := s.groups[gkey]
	if g == nil {
		g = &group{labels: labels}
		s.groups[gkey] = g
		s.metrics.nodeGroups.Set(float64(len(s.groups)))
	}
	g.nodes++
	n := s.nodes[st.nodeID]
	if n == nil {
		n = &nodeState{status: NodeStatus{Connected: st.opened, Types: map[string]TypeStatus{}}}
		s.nodes[st.nodeID] = n
	}
	n.status.ID, n.status.Cluster, n.status.Labels, n.status.Group = node.GetId(), node.GetCluster(), labels, gkey
	n.status.Delta = key.delta
	n.status.Streams++
	s.metrics.connectedNodes.Set(float64(len(s.nodes)))
	s.mu.Unlock()
	s.log.Info("node connected", "node", node.GetId(), "cluster", node.GetCluster(), "group", gkey, "delta", key.delta)
	s.ensureGroup(gkey)
}

// onRequest records an ACK or NACK; for a NACK it returns the rejected
// version when known.
func (s *Server) onRequest(key streamKey, node *corev3.Node, typeURL, version, nonce string, errDetail *status.Status) string {
	s.attach(key, node)
	s.mu.Lock()
	st := s.streams[key]
	if st == nil || s.nodes[st.nodeID] == nil {
		s.mu.Unlock()
		return ""
	}
	n := s.nodes[st.nodeID]
	s.log.Debug("discovery request", "node", st.nodeID, "type", typeLabel(typeURL), "version", version,
		"nonce", nonce, "nack", errDetail != nil)
	ts := n.status.Types[typeURL]
	sent, matched := st.inflight[typeURL]
	matched = matched && sent.nonce == nonce && nonce != ""
	if matched {
		delete(st.inflight, typeURL)
	}
	switch {
	case errDetail != nil:
		nack := &Nack{TypeURL: typeURL, Error: errDetail.GetMessage(), Time: time.Now()}
		if matched {
			nack.Version = sent.version
		}
		// Counted before it shows in status, so that whoever sees the
		// NACK there finds it counted too.
		s.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
		n.status.LastNack = nack
		s.mu.Unlock()
		s.log.Warn("envoy rejected configuration", "node", st.nodeID, "type", typeLabel(typeURL),
			"version", nack.Version, "error", oneLine(nack.Error))
		return nack.Version
	case matched:
		ts.Acked = sent.version
		s.observeConvergenceLocked(st, typeURL, sent.version)
	case nonce == "" && version != "":
		// A reconnecting SotW Envoy reports the version it already runs;
		// versions are content hashes, so it is meaningful here too.
		ts.Acked = version
	}
	n.status.Types[typeURL] = ts
	s.mu.Unlock()
	return ""
}

func (s *Server) onResponse(key streamKey, typeURL, nonce, version string) {
	s.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return
	}
	st.inflight[typeURL] = sentResponse{nonce: nonce, version: version}
	s.log.Debug("discovery response", "node", st.nodeID, "type", typeLabel(typeURL), "version", version, "nonce", nonce)
	if n := s.nodes[st.nodeID]; n != nil {
		ts := n.status.Types[typeURL]
		ts.Sent = version
		n.status.Types[typeURL] = ts
	}
}

// observeConvergenceLocked records how long an ACKed version took to reach
// the node, counted from when it was set or, for a node that connected
// later, from when the node connected.
func (s *Server) observeConvergenceLocked(st *streamState, typeURL, version string) {
	g := s.groups[st.group]
	if g == nil || g.versions[typeURL] != version {
		return
	}
	start := g.setAt[typeURL]
	if st.opened.After(start) {
		start = st.opened
	}
	s.metrics.convergence.WithLabelValues(typeLabel(typeURL)).Observe(time.Since(start).Seconds())
}

// oneLine keeps multi-line Envoy error details on one log line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

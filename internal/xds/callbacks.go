package xds

import (
	"context"
	"maps"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// callbacks are the ADS server's hooks into go-control-plane. They are a
// type of their own so that nothing outside the package can call them.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.tracker.open(streamKey{id: id}, peerIdentity(ctx), streamIP(ctx), revocableFrom(ctx))
	return nil
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.tracker.open(streamKey{delta: true, id: id}, peerIdentity(ctx), streamIP(ctx), revocableFrom(ctx))
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.s.closeStream(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.closeStream(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamRequest(id int64, req *discoverygrpc.DiscoveryRequest) error {
	var held heldReport
	if req.GetVersionInfo() != "" && req.GetResponseNonce() == "" {
		// A node that already runs configs: what it subscribes to.
		held.version, held.resources = req.GetVersionInfo(), map[string]string{}
		for _, n := range req.GetResourceNames() {
			held.resources[n] = ""
		}
	}
	rejected, group, err := c.s.onRequest(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetVersionInfo(),
		req.GetResponseNonce(), req.GetErrorDetail(), held, subscription{whole: true, names: req.GetResourceNames()})
	if err != nil {
		return err
	}
	c.s.cache.direct(streamKey{id: id}, req, routing{group: group, holds: req.GetVersionInfo(), rejected: rejected})
	return nil
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	// Delta needs no NACK handling: the cache compares per-resource
	// versions with what it sent, so a rejected config is not resent.
	// The initial versions are copied: go-control-plane keeps the map as
	// the subscription's and changes it on the stream's goroutine, while a
	// report kept for the group's first build is read by Update.
	_, group, err := c.s.onRequest(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), "",
		req.GetResponseNonce(), req.GetErrorDetail(), heldReport{resources: maps.Clone(req.GetInitialResourceVersions())},
		deltaSubscription(req))
	if err != nil {
		return err
	}
	c.s.cache.direct(streamKey{delta: true, id: id}, req, routing{group: group})
	return nil
}

// deltaSubscription is what an extension config delta request says of its
// stream's subscription: the names it adds (those it subscribes to, and
// on a new stream those it already holds) and drops. Other types carry
// nothing the server keeps.
func deltaSubscription(req *discoverygrpc.DeltaDiscoveryRequest) subscription {
	if req.GetTypeUrl() != resource.ExtensionConfigType {
		return subscription{}
	}
	held := slices.Collect(maps.Keys(req.GetInitialResourceVersions()))
	return subscription{names: slices.Concat(req.GetResourceNamesSubscribe(), held), drop: req.GetResourceNamesUnsubscribe()}
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	c.s.onResponse(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
	c.s.onResponse(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest: REST fetches are not served.
func (c callbacks) OnFetchRequest(context.Context, *discoverygrpc.DiscoveryRequest) error { return nil }

func (c callbacks) OnFetchResponse(*discoverygrpc.DiscoveryRequest, *discoverygrpc.DiscoveryResponse) {
}

// closeStream forgets a stream and the group membership of its node.
func (s *Server) closeStream(key streamKey) {
	s.cache.streamClosed(key)
	group, nodeID, attached, gone := s.tracker.close(key)
	if !attached {
		return
	}
	s.mu.Lock()
	if g := s.groups[group]; g != nil {
		delete(g.subscribed, key)
		if g.nodes--; g.nodes == 0 {
			s.wentIdleLocked(g)
		}
	}
	s.mu.Unlock()
	if gone {
		s.deliveries.forget(nodeID)
		s.log.Info("node disconnected", "node", nodeID, "group", group)
	}
	_, _, nodes := s.tracker.counts(false)
	s.metrics.connectedNodes.Set(float64(nodes))
}

// attach records the node behind a stream on its first request, if it is
// admitted, and makes sure its group has a snapshot before the request's
// watch is created. On a stream already refused it returns the error that
// ends it.
func (s *Server) attach(key streamKey, node *corev3.Node) error {
	a, err := s.admit(key, node)
	if a == nil {
		return err
	}
	s.mu.Lock()
	g := s.groups[a.group]
	if g != nil && g.nodes == 0 {
		s.idleGroups-- // back in use
	}
	if g == nil {
		g = newGroup(a.labels, NodeBucket(a.nodeID))
		if a.identity == "" && a.ip != "" {
			g.creator = a.ip
		}
		s.groups[a.group] = g
		s.metrics.nodeGroups.Set(float64(len(s.groups)))
	}
	g.nodes++
	s.mu.Unlock()
	_, _, nodes := s.tracker.counts(false)
	s.metrics.connectedNodes.Set(float64(nodes))
	s.deliveries.setAddr(a.nodeID, a.ip)
	s.log.Info("node connected", "node", a.nodeID, "cluster", a.cluster, "group", a.group, "delta", key.delta)
	if len(a.ignored) > 0 {
		s.log.Warn("node sent labels whose values are not strings; selectors ignore them "+
			"(quote them in the bootstrap)", "node", a.nodeID, "labels", a.ignored)
	}
	s.ensureGroup(a.group)
	return nil
}

// admit authorizes the node of a stream still pending and attaches it. It
// returns nil and no error when the stream had already attached, nil and
// the error that ends the stream when it is refused.
func (s *Server) admit(key streamKey, node *corev3.Node) (*attachment, error) {
	s.authMu.RLock()
	defer s.authMu.RUnlock()
	identity, pending, ended := s.tracker.pending(key)
	if !pending {
		if ended == nil {
			return nil, s.keepBinding(key, identity, node)
		}
		return nil, ended
	}
	if err := checkNode(node); err != nil {
		return nil, s.deny(key, identity, node, err)
	}
	if s.authorize != nil {
		if err := s.authorize(identity, node); err != nil {
			return nil, s.deny(key, identity, node, err)
		}
	}
	if identity == "" {
		if err := s.checkLabelSets(s.tracker.sourceOf(key), node); err != nil {
			return nil, s.deny(key, identity, node, err)
		}
	}
	a := s.tracker.attach(key, node)
	if a != nil {
		a.identity = identity
	}
	return a, nil
}

// deny records a refused node and returns the error that ends its stream.
func (s *Server) deny(key streamKey, identity string, node *corev3.Node, why error) error {
	reason, id := truncate(why.Error(), MaxNackDetail), truncate(node.GetId(), maxNodeID)
	end := status.Error(codes.PermissionDenied, "wasmxds refused node "+id+": "+reason)
	s.tracker.deny(key, NodeDenial{Identity: identity, NodeID: id, Reason: reason, Time: s.clock.Now()}, end)
	s.metrics.refused.Inc()
	s.log.Warn("node refused", "node", node.GetId(), "identity", identity, "reason", why)
	return end
}

// onRequest records an ACK or NACK, and for an extension config request
// what the stream subscribes to; for a NACK it returns the rejected
// version when known.
func (s *Server) onRequest(key streamKey, node *corev3.Node, typeURL, version, nonce string, errDetail *rpcstatus.Status,
	held heldReport, sub subscription) (rejected, group string, err error) {
	if err := s.attach(key, node); err != nil {
		return "", "", err
	}
	nack, acked, nodeID, group := s.tracker.request(key, typeURL, version, nonce, errDetail)
	if typeURL == resource.ExtensionConfigType || (typeURL == resource.ListenerType && acked != nil) {
		s.mu.Lock()
		if g := s.groups[group]; g != nil {
			if typeURL == resource.ExtensionConfigType {
				noteSubscriptionLocked(g, key, sub)
			} else {
				noteListenersAckedLocked(g, key, acked.version)
			}
		}
		s.mu.Unlock()
	}
	if typeURL == resource.ExtensionConfigType && len(held.resources) > 0 {
		s.noteHeld(group, held)
	}
	if nonce == "" && errDetail == nil {
		s.reportedVersion(nodeID, group, typeURL, version)
	}
	s.log.Debug("discovery request", "node", nodeID, "type", typeLabel(typeURL), "version", version,
		"nonce", nonce, "nack", errDetail != nil)
	isECDS := typeURL == resource.ExtensionConfigType
	if nack != nil {
		if s.redact != nil {
			nack.Error = s.redact(nack.Error)
		}
		if isECDS && s.ecdsNack(nodeID, group, nack) {
			return nack.Version, group, nil
		}
		s.tracker.setLastNack(nodeID, nack)
		s.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
		s.log.Warn("envoy rejected configuration", "node", nodeID, "type", typeLabel(typeURL),
			"version", nack.Version, "error", oneLine(nack.Error))
		return nack.Version, group, nil
	}
	if acked != nil {
		if isECDS {
			s.ecdsAck(nodeID, acked)
		}
		s.observeConvergence(acked)
	}
	return "", group, nil
}

// onResponse records a response about to be sent; one on a revoked stream
// is never sent (see revocable), so it is not recorded.
func (s *Server) onResponse(key streamKey, typeURL, nonce, version string) {
	nodeID, group, ok := s.tracker.response(key, typeURL, nonce, version)
	if !ok {
		return
	}
	s.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	if typeURL == resource.ExtensionConfigType {
		s.ecdsSent(nodeID, group, version)
	}
	s.log.Debug("discovery response", "node", nodeID, "type", typeLabel(typeURL), "version", version, "nonce", nonce)
}

// observeConvergence records how long an ACKed version took to reach the
// node, counted from when it was set or, for a node that connected later,
// from when the node connected.
func (s *Server) observeConvergence(a *ack) {
	s.mu.Lock()
	g := s.groups[a.group]
	if g == nil || g.versions[a.typeURL] != a.version {
		s.mu.Unlock()
		return
	}
	start := g.setAt[a.typeURL]
	s.mu.Unlock()
	if a.opened.After(start) {
		start = a.opened
	}
	s.metrics.convergence.WithLabelValues(typeLabel(a.typeURL)).Observe(s.clock.Since(start).Seconds())
}

package controlplane

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// authorize admits a node when client certificates are required: the
// NodeAccess documents whose principals match the node's identity must
// grant every label it claims and, if any of them restricts node ids, its
// id. Without client certificates every node is admitted (labels-only).
func (cp *ControlPlane) authorize(identity string, node *corev3.Node) error {
	if cp.opts.ClientCAFile == "" {
		return nil
	}
	grants := cp.grants.Load()
	if grants == nil {
		return errors.New("no NodeAccess loaded yet")
	}
	return admitNode(*grants, identity, node)
}

// regrant makes st's NodeAccess the grants nodes are admitted by and ends
// the streams of connected nodes they no longer admit. It runs before the
// controller sees st, so that no configuration of st reaches a node st
// refuses.
func (cp *ControlPlane) regrant(st *catalog.State) {
	if cp.opts.ClientCAFile == "" {
		return
	}
	grants := st.NodeAccess
	cp.grants.Store(&grants)
	ended := cp.server.Reauthorize(func(identity string, node *corev3.Node) error {
		return admitNode(grants, identity, node)
	})
	if ended > 0 {
		cp.log.Warn("NodeAccess no longer grants connected nodes; their streams ended",
			"component", "access", "nodes", ended)
	}
}

// admitNode applies NodeAccess grants to the node behind a stream.
func admitNode(grants []catalog.NodeAccess, identity string, node *corev3.Node) error {
	if identity == "" {
		return errors.New("no identity in the client certificate")
	}
	return admit(grants, identity, node.GetId(), xds.NodeLabels(node))
}

// admit applies NodeAccess grants to one node.
func admit(grants []catalog.NodeAccess, identity, nodeID string, labels map[string]string) error {
	var mine []catalog.NodeAccess
	for _, g := range grants {
		if slices.ContainsFunc(g.Principals, func(p string) bool { return catalog.MatchPattern(p, identity) }) {
			mine = append(mine, g)
		}
	}
	if len(mine) == 0 {
		return fmt.Errorf("identity %s is granted nothing: no NodeAccess names it", identity)
	}
	var refused []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !slices.ContainsFunc(mine, func(g catalog.NodeAccess) bool { v, ok := g.Labels[k]; return ok && v == labels[k] }) {
			refused = append(refused, k+"="+labels[k])
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("identity %s may not claim labels %s: no NodeAccess grants them", identity, strings.Join(refused, ","))
	}
	anyID := slices.ContainsFunc(mine, func(g catalog.NodeAccess) bool { return len(g.NodeIDs) == 0 })
	idOK := slices.ContainsFunc(mine, func(g catalog.NodeAccess) bool {
		return slices.ContainsFunc(g.NodeIDs, func(p string) bool { return catalog.MatchPattern(p, nodeID) })
	})
	if !anyID && !idOK {
		return fmt.Errorf("identity %s may not use node id %q: no NodeAccess grants it", identity, nodeID)
	}
	return nil
}

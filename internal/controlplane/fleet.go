package controlplane

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// ReplicaReport is one replica of the fleet in the status document: this
// one (state self) and every peer.
type ReplicaReport struct {
	ID      string `json:"id"` // "" for a peer never heard from
	Address string `json:"address"`
	// State is self, up, failing (its last request failed) or unreachable
	// (not heard from for 30 s: its nodes are shown as such).
	State    string    `json:"state"`
	Ready    bool      `json:"ready"`
	Nodes    int       `json:"nodes"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
	Error    string    `json:"error,omitempty"` // why its last request failed
}

// fleet is the replicas and every node of the fleet: local's, marked as
// this replica's, and each peer's as it last reported them. A node found on
// two replicas (it moved) is shown once, on a reachable one, the newest
// stream first.
func (cp *ControlPlane) fleet(local []xds.NodeStatus, ready bool, now time.Time) ([]ReplicaReport, []xds.NodeStatus) {
	replicas := []ReplicaReport{{ID: cp.replicaID, Address: cp.AdminAddr(), State: PeerSelf, Ready: ready,
		Nodes: len(local), LastSeen: now}}
	nodes := make([]xds.NodeStatus, 0, len(local))
	for _, n := range local {
		n.Replica = cp.replicaID
		nodes = append(nodes, n)
	}
	for _, v := range cp.peerViews(now) {
		rep := ReplicaReport{Address: v.addr, State: v.state, LastSeen: v.lastSeen, Error: v.lastErr}
		if v.doc != nil {
			rep.ID, rep.Ready, rep.Nodes = v.doc.ID, v.doc.Ready && v.reportCurrent(), len(v.doc.Nodes)
			for _, n := range v.doc.Nodes {
				n.Replica, n.Unreachable = v.doc.ID, !v.reportCurrent()
				nodes = append(nodes, n)
			}
		}
		replicas = append(replicas, rep)
	}
	return replicas, dedupeNodes(nodes)
}

func (cp *ControlPlane) peerViews(now time.Time) []peerView {
	if cp.peers == nil {
		return nil
	}
	return cp.peers.view(now)
}

// dedupeNodes keeps one entry per node id, sorted by id: a reachable one
// before an unreachable one, then the newest stream.
func dedupeNodes(nodes []xds.NodeStatus) []xds.NodeStatus {
	slices.SortStableFunc(nodes, func(a, b xds.NodeStatus) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		if a.Unreachable != b.Unreachable {
			if a.Unreachable {
				return 1
			}
			return -1
		}
		return b.Connected.Compare(a.Connected)
	})
	return slices.CompactFunc(nodes, func(a, b xds.NodeStatus) bool { return a.ID == b.ID })
}

// fleetCollector exports the peers by state and the nodes of the fleet.
type fleetCollector struct {
	cp    *ControlPlane
	peers *prometheus.Desc
	nodes *prometheus.Desc
}

func newFleetCollector(cp *ControlPlane) *fleetCollector {
	return &fleetCollector{cp: cp,
		peers: prometheus.NewDesc("wasmxds_peers",
			"Peer replicas by state: up, failing (its last request failed) or unreachable (not heard from for 30 s).",
			[]string{"state"}, nil),
		nodes: prometheus.NewDesc("wasmxds_fleet_nodes",
			"Nodes connected to this replica or to a peer that is not unreachable, each counted once.", nil, nil),
	}
}

func (fc *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fc.peers
	ch <- fc.nodes
}

// Collect counts without building the fleet's statuses: a scrape comes
// every few seconds, and at 10,000 nodes the statuses are megabytes.
func (fc *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{PeerUp: 0, PeerFailing: 0, PeerUnreachable: 0}
	live := map[string]struct{}{}
	for _, id := range fc.cp.server.NodeIDs() {
		live[id] = struct{}{}
	}
	for _, v := range fc.cp.peerViews(time.Now()) {
		counts[v.state]++
		if !v.reportCurrent() {
			continue
		}
		for _, n := range v.doc.Nodes {
			live[n.ID] = struct{}{}
		}
	}
	for _, s := range []string{PeerUp, PeerFailing, PeerUnreachable} {
		ch <- prometheus.MustNewConstMetric(fc.peers, prometheus.GaugeValue, float64(counts[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(fc.nodes, prometheus.GaugeValue, float64(len(live)))
}

// defaultReplicaID is the host name, or "wasmxds" without one.
func defaultReplicaID() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "wasmxds"
}

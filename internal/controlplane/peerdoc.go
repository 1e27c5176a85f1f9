package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// peerStatePath is where a replica's state is read by its peers, on the
// admin listener.
const peerStatePath = "/peer/v1/state"

// Bounds on what a peer may send: a document past them is refused whole.
const (
	maxPeerDoc      = 32 << 20
	maxPeerHalts    = 1024
	maxPeerRefusals = 16384
	maxPeerNodes    = 100000
	maxPeerText     = 253 // ids and plugin names
)

// peerDoc is what a replica tells its peers. Everything in it merges as a
// union: halts and refusals by key, nodes by the replica holding them.
type peerDoc struct {
	ID       string `json:"id"`
	Instance string `json:"instance"` // random per process
	Address  string `json:"address"`  // its admin listener, as it sees it
	Ready    bool   `json:"ready"`
	// Halts are every halted rollout the replica applies, its own and
	// those it learnt.
	Halts []sharedHalt `json:"halts"`
	// Refusals are label set key → plugin → refused module sha256s.
	Refusals map[string]map[string][]string `json:"refusals"`
	// Nodes are the nodes whose streams the replica holds.
	Nodes []xds.NodeStatus `json:"nodes"`
	// Downloads are the modules its module server finished sending lately
	// (see shareddownloads.go).
	Downloads []sharedDownload `json:"downloads,omitempty"`
}

// sharedHalt is a halted rollout as replicas share it. Spec is a digest of
// the rollout's url and percent: an edit of either re-arms the rollout on
// every replica alike, and no URL (which may carry credentials) leaves the
// replica.
type sharedHalt struct {
	Plugin  string    `json:"plugin"`
	SHA256  string    `json:"sha256"`
	Spec    string    `json:"spec"`
	Node    string    `json:"node"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	Replica string    `json:"replica"` // the replica whose node refused the module
	// Cause is HaltAnalysis for a halt by analysis, "" for a refusal (and
	// from replicas that predate analyses).
	Cause string `json:"cause,omitempty"`
}

// specDigest is the shared form of a rolloutSpec.
func specDigest(spec string) string {
	sum := sha256.Sum256([]byte(spec))
	return hex.EncodeToString(sum[:16])
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// validate refuses a document past the bounds or with malformed keys.
func (d *peerDoc) validate() error {
	if d.ID == "" || len(d.ID) > maxPeerText || d.Instance == "" || len(d.Instance) > maxPeerText {
		return errors.New("missing or overlong id or instance")
	}
	if len(d.Halts) > maxPeerHalts || len(d.Nodes) > maxPeerNodes {
		return fmt.Errorf("%d halts and %d nodes: over the bounds (%d, %d)", len(d.Halts), len(d.Nodes), maxPeerHalts, maxPeerNodes)
	}
	for i := range d.Halts {
		h := &d.Halts[i]
		if h.Plugin == "" || len(h.Plugin) > maxPeerText || !hexSHA256.MatchString(h.SHA256) || len(h.Spec) > 64 ||
			len(h.Node) > 4096 || len(h.Replica) > maxPeerText {
			return fmt.Errorf("halt %d malformed", i)
		}
		h.Reason = truncateText(h.Reason, xds.MaxNackDetail)
		if h.Cause != HaltAnalysis {
			h.Cause = "" // a refusal, or a cause this replica does not know
		}
	}
	// Downloads only speed up confirmations: malformed ones and those past
	// the bound are dropped, the rest of the document stands.
	d.Downloads = slices.DeleteFunc(d.Downloads, func(dl sharedDownload) bool {
		return !hexSHA256.MatchString(dl.SHA256) || net.ParseIP(dl.Addr) == nil
	})
	if len(d.Downloads) > maxPeerDownloads {
		d.Downloads = d.Downloads[len(d.Downloads)-maxPeerDownloads:]
	}
	n := 0
	for _, byPlugin := range d.Refusals {
		for _, shas := range byPlugin {
			for _, sha := range shas {
				if n++; n > maxPeerRefusals || !hexSHA256.MatchString(sha) {
					return errors.New("refusals over the bound or malformed")
				}
			}
		}
	}
	return nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// fetchPeerDoc reads a peer's state; with etag, an unchanged one comes back
// as nil.
func fetchPeerDoc(ctx context.Context, client *http.Client, url, etag string) (*peerDoc, string, error) {
	ctx, cancel := context.WithTimeout(ctx, peerRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("peer %s: %w", url, err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("peer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && etag != "" {
		return nil, etag, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerDoc+1))
	if err != nil {
		return nil, "", fmt.Errorf("peer %s: reading: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("peer %s: %s: %s", url, resp.Status, truncateText(string(bytes.TrimSpace(body)), 200))
	}
	if len(body) > maxPeerDoc {
		return nil, "", fmt.Errorf("peer %s: state over %d bytes", url, maxPeerDoc)
	}
	var doc peerDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, "", fmt.Errorf("peer %s: decoding: %w", url, err)
	}
	if err := doc.validate(); err != nil {
		return nil, "", fmt.Errorf("peer %s: %w", url, err)
	}
	return &doc, resp.Header.Get("ETag"), nil
}

// peerDocument is this replica's state for its peers. Free text that an
// Envoy wrote (NACK and refusal reasons) is redacted of plugin secrets, as
// in status; pluginConfig itself is never part of it.
func (cp *ControlPlane) peerDocument() peerDoc {
	doc := peerDoc{ID: cp.replicaID, Instance: cp.instance, Address: cp.AdminAddr(), Ready: cp.notReady() == nil,
		Halts: cp.ctrl.rollouts.sharedHalts(), Refusals: cp.server.LabelSetRefusals(), Nodes: cp.server.Status(),
		Downloads: cp.downloads.recent(time.Now())}
	redact := cp.ctrl.secrets.redact
	for i := range doc.Nodes {
		n := &doc.Nodes[i]
		if n.LastNack != nil {
			n.LastNack.Error = redact(n.LastNack.Error)
		}
		for j := range n.Plugins {
			n.Plugins[j].Reason = redact(n.Plugins[j].Reason)
		}
	}
	return doc
}

// peerHandler serves peerDocument, with an ETag so that an unchanged state
// costs a peer's poll no body. With client certificates configured, only a
// peer presenting this replica's certificate identity is answered.
func (cp *ControlPlane) peerHandler(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := cp.peerTLS.authorize(r); err != nil {
			log.Debug("peer request refused", "remote", r.RemoteAddr, "error", err)
			http.Error(w, "peer state needs this replica's client certificate: "+err.Error(), http.StatusForbidden)
			return
		}
		body, err := json.Marshal(cp.peerDocument())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:12]) + `"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-store")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}

// mergePeers applies what the peers said: their halts go to the controller
// and their refusals to the xDS server, both taken only where they apply to
// this replica's current state; their module downloads reach the xDS
// server as if served here.
func (cp *ControlPlane) mergePeers() {
	var halts []sharedHalt
	refusals := map[string]map[string][]string{}
	now := time.Now()
	for _, v := range cp.peers.view(now) {
		if v.doc == nil {
			continue
		}
		// Recorded as served now, not at the peer's time: a re-push sent
		// in between does not count it, which only delays a refusal.
		for _, dl := range cp.downloads.fresh(v.doc.Instance, v.doc.Downloads, now) {
			cp.server.ModuleServed(dl.SHA256, dl.Addr)
		}
		halts = append(halts, v.doc.Halts...)
		for labels, byPlugin := range v.doc.Refusals {
			if refusals[labels] == nil {
				refusals[labels] = map[string][]string{}
			}
			for plugin, shas := range byPlugin {
				refusals[labels][plugin] = append(refusals[labels][plugin], shas...)
			}
		}
	}
	cp.ctrl.rollouts.setPeerHalts(halts)
	if n := cp.server.AddRefusals(refusals); n > 0 {
		cp.log.Info("modules refused on peer replicas now held back here too", "component", "peers", "refusals", n)
	}
}

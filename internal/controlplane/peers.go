package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Peer timing. Replicas poll each other's admin listener; see
// docs/replicas.md for why plain HTTP(S) and not a gossip library.
const (
	// DefaultPeerInterval is how often a replica asks each peer for its
	// state: a halt reaches every replica within one interval of a peer
	// hearing of it, plus a push.
	DefaultPeerInterval = 500 * time.Millisecond
	// DefaultPeerUnreachable is how long a peer may go unheard before
	// status calls it unreachable.
	DefaultPeerUnreachable = 30 * time.Second
	// peerRequestTimeout bounds one request to a peer, connection included.
	peerRequestTimeout = 2 * time.Second
	// peerResolveEvery is how often dns: peers are resolved again.
	peerResolveEvery = 10 * time.Second
	// peerForget drops a peer that left DNS once unheard this long.
	peerForget = 5 * time.Minute
)

// Peer states in ReplicaReport.State and wasmxds_peers{state}.
const (
	PeerSelf        = "self"        // this replica
	PeerUp          = "up"          // its last answer was good
	PeerFailing     = "failing"     // its last request failed, heard from recently
	PeerUnreachable = "unreachable" // not heard from for DefaultPeerUnreachable
)

// peerSpec is one --peer: an admin address, or a DNS name whose every A and
// AAAA record is a peer.
type peerSpec struct {
	addr      string // host:port, for a static peer
	dns, port string
}

func parsePeer(s string) (peerSpec, error) {
	if rest, ok := strings.CutPrefix(s, "dns:"); ok {
		name, port, err := net.SplitHostPort(rest)
		if err != nil || name == "" {
			return peerSpec{}, fmt.Errorf("--peer %q: want dns:NAME:PORT", s)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return peerSpec{}, fmt.Errorf("--peer %q: port: %w", s, err)
		}
		return peerSpec{dns: name, port: port}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return peerSpec{}, fmt.Errorf("--peer %q: want host:port (the peer's admin address) or dns:NAME:PORT", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return peerSpec{}, fmt.Errorf("--peer %q: port: %w", s, err)
	}
	return peerSpec{addr: s}, nil
}

// ipResolver finds the addresses of a dns: peer's name; *net.Resolver is
// one.
type ipResolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// peer is what this replica knows of one peer address.
type peer struct {
	addr     string
	static   bool      // named by --peer host:port
	inDNS    bool      // in the last answer of a dns: peer
	added    time.Time // when it was first known
	lastSeen time.Time // last good answer
	lastErr  string
	polled   bool // a first request finished, whatever its outcome
	inflight bool
	self     bool // the address is this replica's own
	etag     string
	doc      *peerDoc
}

// peerSet finds the peers and polls them. Its methods are safe for
// concurrent use; run owns every goroutine it starts.
type peerSet struct {
	specs       []peerSpec
	instance    string // this process, to recognise itself among peers
	interval    time.Duration
	unreachable time.Duration
	client      *http.Client
	scheme      string
	log         *slog.Logger
	resolver    ipResolver
	onDoc       func() // a peer's state arrived or changed

	mu       sync.Mutex
	peers    map[string]*peer
	resolved bool // the first DNS resolution finished
	polls    sync.WaitGroup
}

// run resolves dns: peers and polls every peer until ctx ends, then waits
// for the requests in flight.
func (ps *peerSet) run(ctx context.Context) {
	defer ps.polls.Wait()
	ps.resolve(ctx)
	poll := time.NewTicker(ps.interval)
	defer poll.Stop()
	resolve := time.NewTicker(peerResolveEvery)
	defer resolve.Stop()
	ps.pollAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			ps.pollAll(ctx)
			// What did not apply yet (a module this replica has not
			// resolved) is offered again.
			if ps.onDoc != nil {
				ps.onDoc()
			}
		case <-resolve.C:
			ps.resolve(ctx)
		}
	}
}

// resolve looks up every dns: peer; a failed lookup keeps what the last
// one found.
func (ps *peerSet) resolve(ctx context.Context) {
	found := map[string]bool{}
	failed := false
	for _, s := range ps.specs {
		if s.dns == "" {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, peerRequestTimeout)
		ips, err := ps.resolver.LookupIPAddr(lctx, s.dns)
		cancel()
		if err != nil {
			failed = true
			ps.log.Warn("peer name not resolved; the last addresses stay", "peer", s.dns, "error", err)
			continue
		}
		for _, ip := range ips {
			found[net.JoinHostPort(ip.IP.String(), s.port)] = true
		}
	}
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.resolved = true
	for _, s := range ps.specs {
		if s.addr != "" {
			ps.addLocked(s.addr, now).static = true
		}
	}
	for addr := range found {
		ps.addLocked(addr, now).inDNS = true
	}
	for addr, p := range ps.peers {
		if failed || p.static || found[addr] {
			continue
		}
		p.inDNS = false
		if now.Sub(cmpTime(p.lastSeen, p.added)) > peerForget {
			delete(ps.peers, addr)
		}
	}
}

func cmpTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

func (ps *peerSet) addLocked(addr string, now time.Time) *peer {
	p := ps.peers[addr]
	if p == nil {
		p = &peer{addr: addr, added: now}
		ps.peers[addr] = p
	}
	return p
}

// pollAll asks every peer not already being asked for its state.
func (ps *peerSet) pollAll(ctx context.Context) {
	ps.mu.Lock()
	var due []*peer
	for _, p := range ps.peers {
		if !p.self && !p.inflight {
			p.inflight = true
			due = append(due, p)
		}
	}
	ps.mu.Unlock()
	for _, p := range due {
		ps.polls.Go(func() { ps.poll(ctx, p) })
	}
}

// poll asks one peer for its state, bounded in time and size.
func (ps *peerSet) poll(ctx context.Context, p *peer) {
	ps.mu.Lock()
	etag := p.etag
	ps.mu.Unlock()
	doc, newTag, err := fetchPeerDoc(ctx, ps.client, ps.scheme+"://"+p.addr+peerStatePath, etag)
	now := time.Now()
	ps.mu.Lock()
	p.inflight, p.polled = false, true
	changed := false
	switch {
	case ctx.Err() != nil:
	case err != nil:
		if p.lastErr == "" {
			ps.log.Warn("peer not answering", "peer", p.addr, "error", err)
		}
		p.lastErr = err.Error()
	case doc != nil && doc.Instance == ps.instance:
		p.self = true
	default:
		if p.lastErr != "" || p.lastSeen.IsZero() {
			ps.log.Info("peer answering", "peer", p.addr)
		}
		p.lastSeen, p.lastErr = now, ""
		if doc != nil {
			p.doc, p.etag, changed = doc, newTag, true
		}
	}
	ps.mu.Unlock()
	if changed && ps.onDoc != nil {
		ps.onDoc()
	}
}

// settled reports whether the first DNS resolution and a first request to
// every peer it found have finished (answered, failed or timed out).
func (ps *peerSet) settled() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.resolved {
		return false
	}
	for _, p := range ps.peers {
		if !p.polled && !p.self {
			return false
		}
	}
	return true
}

// peerView is a copy of one peer for status and merging.
type peerView struct {
	addr     string
	state    string
	lastSeen time.Time
	lastErr  string
	doc      *peerDoc // nil before a first answer; shared, read-only
}

// reportCurrent reports whether the peer's last report stands: it
// answered once and is not unreachable. Only then do its nodes count as
// connected (the fleet's node count) and its readiness show; the status
// page marks the nodes of an unreachable peer as such.
func (v peerView) reportCurrent() bool { return v.doc != nil && v.state != PeerUnreachable }

// view returns every peer but this replica, sorted by address.
func (ps *peerSet) view(now time.Time) []peerView {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []peerView
	for _, p := range ps.peers {
		if p.self {
			continue
		}
		v := peerView{addr: p.addr, lastSeen: p.lastSeen, lastErr: p.lastErr, doc: p.doc}
		switch {
		case now.Sub(cmpTime(p.lastSeen, p.added)) >= ps.unreachable:
			v.state = PeerUnreachable
		case p.lastErr != "" || p.lastSeen.IsZero():
			v.state = PeerFailing
		default:
			v.state = PeerUp
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b peerView) int { return strings.Compare(a.addr, b.addr) })
	return out
}

package xds

import (
	"sync"
	"time"
)

// Downloads the module server saw finish: whose they are decides whether a
// first module is confirmed and whether a NACK is a refusal (see
// confirm.go, nack.go and docs/design/download-attribution.md).

// downloads records when each module was last served whole, per client IP,
// and when last through a proxy (to an address no node connected from).
type downloads struct {
	mu      sync.Mutex
	done    map[string]map[string]time.Time // sha256 → client IP → last complete download
	proxied map[string]time.Time            // sha256 → last complete download through a proxy
	swept   time.Time                       // last sweep of downloads past downloadsForget
}

// record notes a download of sha to ip; proxied: no node connects from ip.
func (d *downloads) record(sha, ip string, at time.Time, proxied bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		d.done = map[string]map[string]time.Time{}
		d.proxied = map[string]time.Time{}
	}
	if at.Sub(d.swept) > downloadsSweep {
		d.sweepLocked(at)
	}
	if proxied {
		d.proxied[sha] = at
	}
	if d.done[sha] == nil {
		d.done[sha] = map[string]time.Time{}
	}
	d.done[sha][ip] = at
}

// sweepLocked forgets downloads older than downloadsForget. It walks every
// download, so record runs it at most every downloadsSweep: a fleet's
// downloads come in bursts, and lookups hold the server's lock.
func (d *downloads) sweepLocked(now time.Time) {
	d.swept = now
	for s, t := range d.proxied {
		if now.Sub(t) > downloadsForget {
			delete(d.proxied, s)
		}
	}
	for s, byIP := range d.done {
		for k, t := range byIP {
			if now.Sub(t) > downloadsForget {
				delete(byIP, k)
			}
		}
		if len(byIP) == 0 {
			delete(d.done, s)
		}
	}
}

// seen is what the module server saw of one module.
type seen struct {
	byNode  bool // served whole to the node's address (to anyone, when it is unknown) before the time asked
	proxied bool // served whole through a proxy, for any node, within the times asked
	anyone  bool // served whole to anyone, whenever
}

// before reports what was seen of sha for a node at ip: served to ip
// before to, or through a proxy between from and to.
func (d *downloads) before(sha, ip string, from, to time.Time) seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s seen
	byIP := d.done[sha]
	s.anyone = len(byIP) > 0
	if ip == "" {
		for _, at := range byIP {
			s.byNode = s.byNode || at.Before(to)
		}
	} else if at, ok := byIP[ip]; ok && at.Before(to) {
		s.byNode = true
	}
	if at, ok := d.proxied[sha]; ok && !at.Before(from) && at.Before(to) {
		s.proxied = true
	}
	return s
}

// Node addresses: a download is a node's when it went to the address the
// node's ADS connection comes from.

func (d *deliveries) setAddr(node, ip string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, had := d.addrs[node]
	if ip == "" || (had && old == ip) {
		return
	}
	if had {
		d.unaddrLocked(old)
	}
	d.addrs[node] = ip
	d.atAddr[ip]++
}

func (d *deliveries) unaddrLocked(ip string) {
	if d.atAddr[ip]--; d.atAddr[ip] <= 0 {
		delete(d.atAddr, ip)
	}
}

// nodeAddr reports whether a node's ADS connection comes from ip. A
// module download from any other address came through a proxy (an L7
// load balancer in front of the module server, say), and may be any
// node's (see ModuleServed).
func (d *deliveries) nodeAddr(ip string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.atAddr[ip] > 0
}

func (d *deliveries) addr(node string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addrs[node]
}

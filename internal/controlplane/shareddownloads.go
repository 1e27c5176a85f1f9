package controlplane

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Module downloads shared between replicas.
//
// Behind one address, an Envoy's module download may reach another replica
// than the one holding its ADS stream. The replica holding the stream
// needs to know of it: a first module is confirmed once its node has
// downloaded it, and a NACK after the download is a refusal (see the xds
// package's confirm.go and nack.go). So each replica lists, in its peer
// state, the downloads its module server finished over the last
// sharedDownloadWindow, and each peer takes those it has not taken yet as
// downloads it served itself. Only downloads served here are listed: one
// learnt from a peer is never passed on, so nothing echoes between
// replicas.

const (
	// sharedDownloadWindow is how long a download is listed for peers:
	// peers poll every 500 ms, and one that is down that long has no use
	// for an older download.
	sharedDownloadWindow = 30 * time.Second
	maxPeerDownloads     = 1024
)

// sharedDownload is one module download, as replicas share it.
type sharedDownload struct {
	SHA256 string    `json:"sha256"`
	Addr   string    `json:"addr"` // the IP the download went to
	At     time.Time `json:"at"`
}

// downloadShare keeps the downloads served here for peers, and which of
// the peers' downloads were taken.
type downloadShare struct {
	mu     sync.Mutex
	served []sharedDownload // oldest first
	taken  map[takenKey]time.Time
}

// takenKey is one download of one peer process; its time is kept as an
// instant (UnixNano), not a time.Time, whose location differs per decoding.
type takenKey struct {
	instance, sha, addr string
	at                  int64
}

// add records a download the module server finished sending to remote
// (host:port).
func (d *downloadShare) add(sha, remote string, now time.Time) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.WithZone("").String() // peers parse it with net.ParseIP
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.served = append(d.served, sharedDownload{SHA256: sha, Addr: host, At: now.UTC()})
	d.expireLocked(now)
}

// recent returns the downloads served here within the window, at most
// maxPeerDownloads of the newest.
func (d *downloadShare) recent(now time.Time) []sharedDownload {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(now)
	return append([]sharedDownload(nil), d.served...)
}

func (d *downloadShare) expireLocked(now time.Time) {
	i := 0
	for i < len(d.served) && now.Sub(d.served[i].At) > sharedDownloadWindow {
		i++
	}
	d.served = d.served[i:]
	if n := len(d.served) - maxPeerDownloads; n > 0 {
		d.served = d.served[n:]
	}
}

// fresh returns the downloads of peer instance not taken before, and marks
// them taken. Marks are kept twice the window, measured on this replica's
// clock: a peer lists a download no longer than the window on its own.
func (d *downloadShare) fresh(instance string, downloads []sharedDownload, now time.Time) []sharedDownload {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.taken == nil {
		d.taken = map[takenKey]time.Time{}
	}
	for k, at := range d.taken {
		if now.Sub(at) > 2*sharedDownloadWindow {
			delete(d.taken, k)
		}
	}
	var out []sharedDownload
	for _, dl := range downloads {
		k := takenKey{instance: instance, sha: dl.SHA256, addr: dl.Addr, at: dl.At.UnixNano()}
		if _, ok := d.taken[k]; ok {
			continue
		}
		d.taken[k] = now
		out = append(out, dl)
	}
	return out
}

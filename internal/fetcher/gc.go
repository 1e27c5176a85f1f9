package fetcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// gc deletes modules not in use whose last use is older than grace, then,
// while the cache holds more than maxBytes (0 = unlimited), the least
// recently used modules not in use. It returns the removed digests.
func (c *cache) gc(grace time.Duration, maxBytes int64) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	type cand struct {
		hex string
		m   moduleEntry
	}
	var total int64
	var cands []cand
	for hex, m := range c.idx.Modules {
		total += m.Size
		if !c.inUse[hex] {
			cands = append(cands, cand{hex, m})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.m.LastUsed.Compare(b.m.LastUsed) })
	var removed []string
	var errs []error
	for _, cd := range cands {
		expired := now.Sub(cd.m.LastUsed) >= grace
		over := maxBytes > 0 && total > maxBytes
		if !expired && !over {
			continue
		}
		if err := os.Remove(c.path(cd.hex)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove module sha256:%s: %w", cd.hex, err))
			continue
		}
		c.forgetLocked(cd.hex)
		total -= cd.m.Size
		removed = append(removed, cd.hex)
	}
	if len(removed) > 0 || c.dirty || c.writeErr != nil {
		errs = append(errs, c.saveLocked())
	}
	return removed, errors.Join(errs...)
}

func (c *cache) forgetLocked(hex string) {
	delete(c.idx.Modules, hex)
	delete(c.verified, hex)
	for ref, r := range c.idx.Refs {
		if r.SHA256 == hex {
			delete(c.idx.Refs, ref)
		}
	}
}

package fetcher

import (
	"slices"
	"sync"
)

// preflightWarnings remembers, per module sha256, what the preflight could
// not check, so each module is logged once however often it is pulled or
// re-read, and every Module for it carries the warnings. It holds what this
// process pulled: a module found in the cache at startup is not re-checked.
// The zero value is ready to use.
type preflightWarnings struct {
	mu    sync.Mutex
	bySHA map[string][]string
}

// note records warnings for the module with sha256 sum and reports whether
// they are new, i.e. should be logged.
func (p *preflightWarnings) note(sum string, warnings []string) bool {
	if len(warnings) == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.bySHA[sum]; ok {
		return false
	}
	if p.bySHA == nil {
		p.bySHA = map[string][]string{}
	}
	p.bySHA[sum] = slices.Clone(warnings)
	return true
}

// of returns a copy of the warnings recorded for sum.
func (p *preflightWarnings) of(sum string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.bySHA[sum])
}

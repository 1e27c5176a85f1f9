package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Good configs: the configs of a plugin that nodes ACKed, the fallback when
// a newer module is refused.

// resourceHash is a resource's version as go-control-plane's delta
// protocol reports it.
func resourceHash(r *corev3.TypedExtensionConfig) string {
	b, err := cache.MarshalResource(r)
	if err != nil {
		return ""
	}
	return cache.HashResource(b)
}

// goodConfigs are a plugin's configs that nodes ACKed, newest first, one
// per module, so that when the newest module is refused elsewhere in the
// label set, the one before it is still known.
type goodConfigs []ecdsEntry

const goodKept = 4

// add records e as the newest.
func (l goodConfigs) add(e ecdsEntry) goodConfigs {
	if len(l) > 0 && l[0] == e {
		return l // every node of a group ACKs the same config
	}
	out := make(goodConfigs, 0, min(len(l)+1, goodKept))
	out = append(out, e)
	for _, o := range l {
		if o.sha != e.sha && len(out) < goodKept {
			out = append(out, o)
		}
	}
	return out
}

// newest is the newest config whose module usable allows.
func (l goodConfigs) newest(usable func(sha string) bool) (ecdsEntry, bool) {
	for _, e := range l {
		if usable(e.sha) {
			return e, true
		}
	}
	return ecdsEntry{}, false
}

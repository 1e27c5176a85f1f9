package xds

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// targetedFilter is a plugin limited to hosts and paths, by the name of the
// filter it put in a listener's chain (its Wasm filter, or the deny-all
// stand-in of a fail-closed plugin that cannot run).
type targetedFilter struct {
	plugin catalog.Plugin
	filter string
}

// plannedRoute is a route to translate with the filters it turns off.
type plannedRoute struct {
	route    catalog.Route
	disabled []string // filter names
	notFound bool     // answers 404: no spec route takes the request
}

// split plans a host's routes for the targeted plugins. A route all of
// whose requests a plugin selects keeps the plugin on; one none of whose
// requests it selects turns it off; one only some of whose requests it
// selects (a prefix / and a plugin on /admin) is preceded by a copy of
// itself for each narrower path, most specific first, each with the
// plugins that select all of its requests on. Each copy takes a subset of
// the route's requests, so the routes before it still win as they did.
//
// A copy that an earlier route would shadow (same path, no header match) is
// left out: Envoy would never pick it.
func split(port uint32, domains []string, routes []catalog.Route, targeted []targetedFilter) []plannedRoute {
	out := make([]plannedRoute, 0, len(routes))
	taken := map[catalog.PathMatch]bool{}
	for _, r := range routes {
		var narrower []catalog.PathMatch
		for _, tf := range targeted {
			_, n := tf.plugin.OnRoute(port, domains, r)
			narrower = append(narrower, n...)
		}
		catalog.SortPaths(narrower)
		var last catalog.PathMatch
		for i, pm := range narrower {
			if (i > 0 && pm == last) || taken[pm] {
				continue
			}
			last = pm
			sub := r
			sub.Prefix, sub.Path = pm.Prefix, pm.Exact
			out = append(out, plannedRoute{route: sub, disabled: disabledOn(port, domains, sub, targeted)})
		}
		out = append(out, plannedRoute{route: r, disabled: disabledOn(port, domains, r, targeted)})
		if len(r.Headers) == 0 {
			taken[catalog.PathMatch{Prefix: r.Prefix, Exact: r.Path}] = true
		}
	}
	if len(targeted) > 0 && !taken[catalog.PathMatch{Prefix: "/"}] {
		out = append(out, notFound(targeted))
	}
	return out
}

// notFound ends a host's routes when targeted plugins are in the chain:
// Envoy runs a listener's filters on requests no route takes too, which
// would let them reach the plugins; this route answers them 404 as Envoy
// would, with every targeted plugin off.
func notFound(targeted []targetedFilter) plannedRoute {
	pr := plannedRoute{route: catalog.Route{Prefix: "/"}, notFound: true}
	for _, tf := range targeted {
		pr.disabled = append(pr.disabled, tf.filter)
	}
	return pr
}

// disabledOn lists the targeted filters that do not select every request
// of route r.
func disabledOn(port uint32, domains []string, r catalog.Route, targeted []targetedFilter) []string {
	var out []string
	for _, tf := range targeted {
		if all, _ := tf.plugin.OnRoute(port, domains, r); !all {
			out = append(out, tf.filter)
		}
	}
	return out
}

// disableFilters turns the named filters off for requests on the route,
// with Envoy's per-route FilterConfig: such requests never reach the
// filter (or the Wasm VM behind it).
func disableFilters(rt *routev3.Route, names []string) error {
	if len(names) == 0 {
		return nil
	}
	off, err := PackValid(&routev3.FilterConfig{Disabled: true})
	if err != nil {
		return err
	}
	rt.TypedPerFilterConfig = make(map[string]*anypb.Any, len(names))
	for _, n := range names {
		rt.TypedPerFilterConfig[n] = off
	}
	return nil
}

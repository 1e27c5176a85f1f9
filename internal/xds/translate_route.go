package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// catchAllDomain is the domain of a listener's top-level routes.
const catchAllDomain = "*"

// routeConfig returns the listener's routes, named after it, and the
// clusters they send traffic to: one virtual host per spec host, named
// after its first domain, and one for the top-level routes, named after
// the listener when it is the only one and "*" otherwise. A request for a
// host none of them serves gets Envoy's 404.
//
// Plugins limited to hosts and paths (targeted) are turned off on every
// route they do not select; a route only part of whose requests they
// select is preceded by routes of its own for those paths.
func (t *translator) routeConfig(l catalog.Listener, targeted []targetedFilter) (*routev3.RouteConfiguration, []string, error) {
	rc := &routev3.RouteConfiguration{Name: l.Name}
	var clusters []string
	hosts := virtualHosts(l)
	if len(targeted) > 0 && len(l.Routes) == 0 {
		// Requests for other hosts would otherwise run the filters.
		hosts = append(hosts, vhost{name: catchAllDomain, domains: []string{catchAllDomain}})
	}
	for _, h := range hosts {
		routes, used, err := t.routes(split(l.Port, h.domains, h.routes, targeted))
		if err != nil {
			return nil, nil, err
		}
		clusters = append(clusters, used...)
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: h.name, Domains: h.domains, Routes: routes})
	}
	if err := rc.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("invalid routes: %w", err)
	}
	return rc, clusters, nil
}

// vhost is a listener's virtual host before translation.
type vhost struct {
	name    string
	domains []string
	routes  []catalog.Route
}

func virtualHosts(l catalog.Listener) []vhost {
	var out []vhost
	if len(l.Routes) > 0 {
		name := l.Name
		if len(l.Hosts) > 0 {
			name = catchAllDomain
		}
		out = append(out, vhost{name: name, domains: []string{catchAllDomain}, routes: l.Routes})
	}
	for _, h := range l.Hosts {
		if len(h.Domains) == 0 {
			continue // the catalog refuses it; nothing could reach it
		}
		out = append(out, vhost{name: h.Domains[0], domains: h.Domains, routes: h.Routes})
	}
	return out
}

// routes translates a host's routes. A route whose cluster is missing or
// invalid answers 503 instead of being left out, so its requests are not
// caught by a later, broader route and sent to the wrong service.
func (t *translator) routes(in []plannedRoute) ([]*routev3.Route, []string, error) {
	out := make([]*routev3.Route, 0, len(in))
	var clusters []string
	for _, pr := range in {
		r := pr.route
		rt := &routev3.Route{Match: routeMatch(r)}
		if err := disableFilters(rt, pr.disabled); err != nil {
			return nil, nil, err
		}
		if pr.notFound {
			rt.Action = directResponse(404, "")
		} else if _, ok := t.cluster(r.Cluster); ok {
			rt.Action = &routev3.Route_Route{Route: routeAction(r)}
			clusters = append(clusters, r.Cluster)
		} else {
			rt.Action = directResponse(503, "cluster "+r.Cluster+" is unavailable\n")
		}
		out = append(out, rt)
	}
	return out, clusters, nil
}

func directResponse(status uint32, body string) *routev3.Route_DirectResponse {
	a := &routev3.DirectResponseAction{Status: status}
	if body != "" {
		a.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}
	}
	return &routev3.Route_DirectResponse{DirectResponse: a}
}

func routeAction(r catalog.Route) *routev3.RouteAction {
	timeout := routeTimeout
	if r.Timeout > 0 {
		timeout = r.Timeout
	}
	a := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.Cluster},
		Timeout:          durationpb.New(timeout),
	}
	if r.Retries != nil {
		a.RetryPolicy = &routev3.RetryPolicy{
			RetryOn:    r.Retries.On,
			NumRetries: wrapperspb.UInt32(r.Retries.Attempts),
		}
	}
	return a
}

func routeMatch(r catalog.Route) *routev3.RouteMatch {
	m := &routev3.RouteMatch{}
	switch {
	case r.Prefix != "":
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: r.Prefix}
	case r.Path != "":
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: r.Path}
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, headerMatcher(h))
	}
	return m
}

func headerMatcher(h catalog.HeaderMatch) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: h.Name}
	switch {
	case h.Present:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case h.Prefix != "":
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Prefix}}}
	default:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Exact}}}
	}
	return hm
}

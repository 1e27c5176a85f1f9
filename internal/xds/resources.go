package xds

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Resources is the Envoy configuration for one node group, each slice sorted
// by resource name. Every resource has passed its proto Validate().
type Resources struct {
	Listeners  []*listenerv3.Listener
	Routes     []*routev3.RouteConfiguration
	Clusters   []*clusterv3.Cluster
	Extensions []*corev3.TypedExtensionConfig // ECDS only; empty with DeliveryLDS
	// Secrets are the listeners' certificates (SDS): file paths that Envoy
	// reads and watches, so a rotated certificate needs no push.
	Secrets []*tlsv3.Secret
}

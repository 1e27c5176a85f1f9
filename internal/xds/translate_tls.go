package xds

import (
	"crypto/sha256"
	"encoding/hex"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

const (
	tlsInspectorName = "envoy.filters.listener.tls_inspector"
	// listenerSecretPrefix names the SDS secrets of listener certificates.
	listenerSecretPrefix = "wasmxds.tls."
)

// chains is a listener's filter chains, the listener filters they need and
// the secrets they name.
type chains struct {
	chains  []*listenerv3.FilterChain
	filters []*listenerv3.ListenerFilter
	secrets []*tlsv3.Secret
}

// filterChains puts the network filters in one filter chain per
// certificate: a chain for each host with its own tls, chosen by SNI, and
// a default chain with the listener's (plain text when it has none and no
// host has one). When hosts have certificates and the listener has none,
// only clients whose SNI names one of those hosts are served.
func filterChains(l catalog.Listener, network []*listenerv3.Filter) (*chains, error) {
	out := &chains{}
	for _, h := range l.Hosts {
		if h.TLS == nil {
			continue
		}
		fc, err := out.tlsChain(*h.TLS, network)
		if err != nil {
			return nil, err
		}
		fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: catalog.ServerNames(h)}
		out.chains = append(out.chains, fc)
	}
	switch {
	case l.TLS != nil:
		fc, err := out.tlsChain(*l.TLS, network)
		if err != nil {
			return nil, err
		}
		out.chains = append(out.chains, fc)
	case len(out.chains) == 0:
		out.chains = append(out.chains, &listenerv3.FilterChain{Filters: network})
	}
	if len(out.secrets) > 0 {
		inspector, err := PackValid(&tlsinspectorv3.TlsInspector{})
		if err != nil {
			return nil, err
		}
		out.filters = []*listenerv3.ListenerFilter{{Name: tlsInspectorName,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector}}}
	}
	return out, nil
}

// tlsChain is a filter chain terminating TLS with the certificate, which
// Envoy gets over SDS.
func (c *chains) tlsChain(t catalog.TLS, network []*listenerv3.Filter) (*listenerv3.FilterChain, error) {
	secret := listenerSecret(t)
	ctx, err := PackValid(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secret.Name, SdsConfig: adsConfigSource()}},
		AlpnProtocols:                  []string{"h2", "http/1.1"},
	}})
	if err != nil {
		return nil, err
	}
	if err := secret.ValidateAll(); err != nil {
		return nil, err
	}
	c.secrets = append(c.secrets, secret)
	return &listenerv3.FilterChain{
		Filters: network,
		TransportSocket: &corev3.TransportSocket{
			Name:       tlsTransportSocketName,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx},
		},
	}, nil
}

// listenerSecret is the SDS secret of a certificate: the paths of its files,
// which Envoy reads and watches (their directories, for files moved into
// place, as certificate renewers and Kubernetes Secret volumes do), so a
// rotated certificate takes effect without a push. It is named after the
// paths, so listeners with the same files share it.
func listenerSecret(t catalog.TLS) *tlsv3.Secret {
	sum := sha256.Sum256([]byte(t.CertFile + "\x00" + t.KeyFile))
	file := func(p string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
	}
	return &tlsv3.Secret{
		Name: listenerSecretPrefix + hex.EncodeToString(sum[:])[:16],
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: file(t.CertFile),
			PrivateKey:       file(t.KeyFile),
		}},
	}
}

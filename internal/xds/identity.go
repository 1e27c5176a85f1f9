package xds

import (
	"context"
	"crypto/x509"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// CertificateIdentity is the identity a client certificate names: its first
// URI SAN (e.g. a SPIFFE ID), else its first DNS SAN, else its subject CN.
func CertificateIdentity(cert *x509.Certificate) string {
	switch {
	case cert == nil:
		return ""
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	}
	return cert.Subject.CommonName
}

// peerIdentity is the identity of a gRPC stream's verified client
// certificate, "" when the peer presented none (or no TLS is in use).
func peerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return ""
	}
	return CertificateIdentity(info.State.VerifiedChains[0][0])
}

// AuthorizeFunc decides, on a node's first request (and again when
// Server.Reauthorize is called), whether the identity behind its stream (""
// without client certificates) may be that node with those labels. A
// non-nil error refuses the node: its stream ends with PermissionDenied and
// the error's message.
type AuthorizeFunc func(identity string, node *corev3.Node) error

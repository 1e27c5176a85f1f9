package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/xds"
)

// Names of the secrets for the connections to wasmxds (the ADS cluster
// here, the module cluster wasmxds pushes), and of the files under
// --tls-sds-dir that hold them.
const (
	sdsCASecret   = xds.SecretCA
	sdsCertSecret = xds.SecretClientCert
	sdsCAFile     = xds.SDSCAFile
	sdsCertFile   = xds.SDSClientCertFile
)

// tlsOptions are the files, as Envoy sees them, that secure the ADS
// connection. None set: plaintext. CA alone: Envoy verifies the server.
// CA, certificate and key: mutual TLS.
type tlsOptions struct {
	caFile   string
	certFile string
	keyFile  string
	sdsDir   string // where the SDS files go; empty: filenames inline
}

func addTLSFlags(f *pflag.FlagSet, o *tlsOptions) {
	f.StringVar(&o.caFile, "tls-ca-file", "", "CA bundle (PEM) that the wasmxds server certificate must chain to; enables TLS")
	f.StringVar(&o.certFile, "tls-cert-file", "", "client certificate chain (PEM) Envoy presents to wasmxds; needs --tls-key-file and --tls-ca-file")
	f.StringVar(&o.keyFile, "tls-key-file", "", "private key (PEM) of --tls-cert-file")
	f.StringVar(&o.sdsDir, "tls-sds-dir", "", "directory, the same path for Envoy, to write file-based SDS configs into so Envoy reloads rotated TLS files; needs --tls-ca-file")
}

// check says what is wrong with a combination of TLS flags.
func (o tlsOptions) check() error {
	switch {
	case o.certFile != "" && o.keyFile == "":
		return errors.New("--tls-cert-file needs --tls-key-file")
	case o.keyFile != "" && o.certFile == "":
		return errors.New("--tls-key-file needs --tls-cert-file")
	case o.certFile != "" && o.caFile == "":
		return errors.New("--tls-cert-file needs --tls-ca-file: Envoy presents its certificate only to a server it has verified")
	case o.sdsDir != "" && o.caFile == "":
		return errors.New("--tls-sds-dir needs --tls-ca-file")
	}
	// Envoy would resolve a relative path against its own working directory.
	for _, f := range []struct{ flag, path string }{
		{"--tls-ca-file", o.caFile}, {"--tls-cert-file", o.certFile}, {"--tls-key-file", o.keyFile}, {"--tls-sds-dir", o.sdsDir},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fmt.Errorf("%s %q: want an absolute path, as Envoy sees it", f.flag, f.path)
		}
	}
	return nil
}

// xdsTransportSocket is the ADS cluster's TLS, or nil for plaintext.
func xdsTransportSocket(host string, o tlsOptions) (*corev3.TransportSocket, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.caFile == "" {
		return nil, nil
	}
	common := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2"}} // gRPC servers insist on h2
	verify := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: xds.ServerNameMatchers(host)}
	// The secrets are static ones (read when Envoy starts) or, with
	// --tls-sds-dir, file-based SDS (reloaded when rotated); either way the
	// module cluster wasmxds pushes refers to the same names. The name check
	// stays here; only the CA comes from the secret.
	secret := func(name, file string) *tlsv3.SdsSecretConfig {
		if o.sdsDir == "" {
			return &tlsv3.SdsSecretConfig{Name: name}
		}
		return xds.FileSDS(name, filepath.Join(o.sdsDir, file))
	}
	common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
		CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         verify,
			ValidationContextSdsSecretConfig: secret(sdsCASecret, sdsCAFile),
		},
	}
	if o.certFile != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{secret(sdsCertSecret, sdsCertFile)}
	}
	return xds.TLSTransportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: xds.SNI(host)})
}

// staticSecrets are the bootstrap's static secrets: the CA and client
// certificate, by file name, unless --tls-sds-dir makes them file-based SDS.
func staticSecrets(o tlsOptions) []*tlsv3.Secret {
	if o.caFile == "" || o.sdsDir != "" {
		return nil
	}
	out := []*tlsv3.Secret{{Name: sdsCASecret, Type: &tlsv3.Secret_ValidationContext{
		ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(o.caFile)}}}}
	if o.certFile != "" {
		out = append(out, &tlsv3.Secret{Name: sdsCertSecret, Type: &tlsv3.Secret_TlsCertificate{
			TlsCertificate: clientCertificate(o)}})
	}
	return out
}

func clientCertificate(o tlsOptions) *tlsv3.TlsCertificate {
	return &tlsv3.TlsCertificate{CertificateChain: fileSource(o.certFile), PrivateKey: fileSource(o.keyFile)}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// sdsFile is one file-based SDS config to write.
type sdsFile struct {
	path    string
	content string
}

// renderSDSFiles renders the secrets that --tls-sds-dir refers to: the
// trusted CA and, with a client certificate, the certificate and key.
// Envoy watches the directories of the files they name: a move there (a
// file renamed into place, or the ..data symlink swap of a Kubernetes Secret
// volume) makes it read them again.
func renderSDSFiles(o tlsOptions) ([]sdsFile, error) {
	if o.sdsDir == "" {
		return nil, nil
	}
	ca := &tlsv3.Secret{Name: sdsCASecret, Type: &tlsv3.Secret_ValidationContext{
		ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(o.caFile)},
	}}
	files, err := appendSDSFile(nil, filepath.Join(o.sdsDir, sdsCAFile), ca)
	if err != nil || o.certFile == "" {
		return files, err
	}
	return appendSDSFile(files, filepath.Join(o.sdsDir, sdsCertFile), &tlsv3.Secret{
		Name: sdsCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: clientCertificate(o)},
	})
}

func appendSDSFile(files []sdsFile, path string, s *tlsv3.Secret) ([]sdsFile, error) {
	content, err := sdsYAML(s)
	if err != nil {
		return nil, err
	}
	return append(files, sdsFile{path: path, content: content}), nil
}

// sdsYAML is the discovery response Envoy reads from a path config source.
func sdsYAML(s *tlsv3.Secret) (string, error) {
	a, err := xds.PackValid(s)
	if err != nil {
		return "", err
	}
	return protoYAML(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{a}})
}

// writeSDSFiles writes each file by rename, the one change Envoy's file
// watch is sure to see whole.
func writeSDSFiles(files []sdsFile) error {
	for _, f := range files {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, []byte(f.content), 0o644); err != nil {
			return fmt.Errorf("writing SDS config: %w", err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return fmt.Errorf("writing SDS config: %w", err)
		}
	}
	return nil
}

package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// Names of the secrets for the connections to wasmxds (the ADS cluster
// here, the module cluster wasmxds pushes), and of the files under
// TLS.SDSDir that hold them.
const (
	sdsCASecret   = xds.SecretCA
	sdsCertSecret = xds.SecretClientCert
	sdsCAFile     = xds.SDSCAFile
	sdsCertFile   = xds.SDSClientCertFile
)

// TLS are the files, as Envoy sees them, that secure the ADS connection.
// None set: plaintext. CA alone: Envoy verifies the server. CA,
// certificate and key: mutual TLS. Envoy reads the files once at start;
// with SDSDir it reloads them when they are moved into place.
type TLS struct {
	CAFile   string // --tls-ca-file: the CA bundle the server certificate must chain to
	CertFile string // --tls-cert-file: the client certificate chain Envoy presents
	KeyFile  string // --tls-key-file: the private key of CertFile
	// SDSDir (--tls-sds-dir) is the directory, the same path for Envoy,
	// where the file-based SDS configs go; empty: the files are named in
	// the bootstrap itself.
	SDSDir string
}

// check says what is wrong with a combination of TLS flags.
func (o TLS) check() error {
	switch {
	case o.CertFile != "" && o.KeyFile == "":
		return errors.New("--tls-cert-file needs --tls-key-file")
	case o.KeyFile != "" && o.CertFile == "":
		return errors.New("--tls-key-file needs --tls-cert-file")
	case o.CertFile != "" && o.CAFile == "":
		return errors.New("--tls-cert-file needs --tls-ca-file: Envoy presents its certificate only to a server it has verified")
	case o.SDSDir != "" && o.CAFile == "":
		return errors.New("--tls-sds-dir needs --tls-ca-file")
	}
	// Envoy would resolve a relative path against its own working directory.
	for _, f := range []struct{ flag, path string }{
		{"--tls-ca-file", o.CAFile}, {"--tls-cert-file", o.CertFile}, {"--tls-key-file", o.KeyFile}, {"--tls-sds-dir", o.SDSDir},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fmt.Errorf("%s %q: want an absolute path, as Envoy sees it", f.flag, f.path)
		}
	}
	return nil
}

// xdsTransportSocket is the ADS cluster's TLS, or nil for plaintext.
func xdsTransportSocket(host string, o TLS) (*corev3.TransportSocket, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.CAFile == "" {
		return nil, nil
	}
	common := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2"}} // gRPC servers insist on h2
	verify := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: xds.ServerNameMatchers(host)}
	// The secrets are static ones (read when Envoy starts) or, with
	// SDSDir, file-based SDS (reloaded when rotated); either way the
	// module cluster wasmxds pushes refers to the same names. The name check
	// stays here; only the CA comes from the secret.
	secret := func(name, file string) *tlsv3.SdsSecretConfig {
		if o.SDSDir == "" {
			return &tlsv3.SdsSecretConfig{Name: name}
		}
		return xds.FileSDS(name, filepath.Join(o.SDSDir, file))
	}
	common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
		CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         verify,
			ValidationContextSdsSecretConfig: secret(sdsCASecret, sdsCAFile),
		},
	}
	if o.CertFile != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{secret(sdsCertSecret, sdsCertFile)}
	}
	return xds.TLSTransportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: xds.SNI(host)})
}

// staticSecrets are the bootstrap's static secrets: the CA and client
// certificate, by file name, unless SDSDir makes them file-based SDS.
func staticSecrets(o TLS) []*tlsv3.Secret {
	if o.CAFile == "" || o.SDSDir != "" {
		return nil
	}
	out := []*tlsv3.Secret{{Name: sdsCASecret, Type: &tlsv3.Secret_ValidationContext{
		ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(o.CAFile)}}}}
	if o.CertFile != "" {
		out = append(out, &tlsv3.Secret{Name: sdsCertSecret, Type: &tlsv3.Secret_TlsCertificate{
			TlsCertificate: clientCertificate(o)}})
	}
	return out
}

func clientCertificate(o TLS) *tlsv3.TlsCertificate {
	return &tlsv3.TlsCertificate{CertificateChain: fileSource(o.CertFile), PrivateKey: fileSource(o.KeyFile)}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// SDSFile is one file-based SDS config to write.
type SDSFile struct {
	Path    string
	Content []byte
}

// renderSDSFiles renders the secrets that SDSDir refers to: the
// trusted CA and, with a client certificate, the certificate and key.
// Envoy watches the directories of the files they name: a move there (a
// file renamed into place, or the ..data symlink swap of a Kubernetes Secret
// volume) makes it read them again.
func renderSDSFiles(o TLS) ([]SDSFile, error) {
	if o.SDSDir == "" {
		return nil, nil
	}
	ca := &tlsv3.Secret{Name: sdsCASecret, Type: &tlsv3.Secret_ValidationContext{
		ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(o.CAFile)},
	}}
	files, err := appendSDSFile(nil, filepath.Join(o.SDSDir, sdsCAFile), ca)
	if err != nil || o.CertFile == "" {
		return files, err
	}
	return appendSDSFile(files, filepath.Join(o.SDSDir, sdsCertFile), &tlsv3.Secret{
		Name: sdsCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: clientCertificate(o)},
	})
}

func appendSDSFile(files []SDSFile, path string, s *tlsv3.Secret) ([]SDSFile, error) {
	content, err := sdsYAML(s)
	if err != nil {
		return nil, err
	}
	return append(files, SDSFile{Path: path, Content: []byte(content)}), nil
}

// sdsYAML is the discovery response Envoy reads from a path config source.
func sdsYAML(s *tlsv3.Secret) (string, error) {
	a, err := xds.PackValid(s)
	if err != nil {
		return "", err
	}
	return protoYAML(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{a}})
}

// WriteSDSFiles writes each SDS file by rename, the one change Envoy's
// file watch is sure to see whole.
func (b Bootstrap) WriteSDSFiles() error {
	for _, f := range b.SDSFiles {
		tmp := f.Path + ".tmp"
		if err := os.WriteFile(tmp, f.Content, 0o644); err != nil {
			return fmt.Errorf("writing SDS config: %w", err)
		}
		if err := os.Rename(tmp, f.Path); err != nil {
			return fmt.Errorf("writing SDS config: %w", err)
		}
	}
	return nil
}

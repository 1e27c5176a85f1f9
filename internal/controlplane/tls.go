package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// tlsFiles are the serving certificate, its key and, for client
// certificate authentication, the CA bundle that signs client certificates.
type tlsFiles struct {
	cert, key, clientCA string
}

// tlsReloader serves TLS from files and picks up rotated files (written in
// place, renamed over, or swapped by a Kubernetes Secret mount) without a
// restart: every handshake checks, at most once per recheck interval,
// whether a file changed, and loads the new material. A rotation that does
// not load (say, a key that does not match the certificate, or a half-written
// file) keeps the previous material serving and is logged.
type tlsReloader struct {
	files   tlsFiles
	log     *slog.Logger
	recheck time.Duration

	mu      sync.Mutex
	checked time.Time
	stamp   string // file sizes and mtimes of the loaded material
	config  *tls.Config
}

func newTLSReloader(files tlsFiles, log *slog.Logger) (*tlsReloader, error) {
	r := &tlsReloader{files: files, log: log.With("component", "tls"), recheck: time.Second}
	cfg, stamp, err := r.load()
	if err != nil {
		return nil, err
	}
	r.config, r.stamp, r.checked = cfg, stamp, time.Now()
	return r, nil
}

// serverConfig is the tls.Config to serve with; h2 is offered for gRPC.
func (r *tlsReloader) serverConfig(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := r.current().Clone()
			cfg.NextProtos = protos
			return cfg, nil
		},
	}
}

// current returns the loaded material, reloading it first if a file
// changed.
func (r *tlsReloader) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < r.recheck {
		return r.config
	}
	r.checked = now
	if stamp, err := r.stampFiles(); err != nil || stamp == r.stamp {
		return r.config
	}
	cfg, stamp, err := r.load()
	if err != nil {
		r.log.Warn("rotated TLS files not loaded; the previous certificate keeps serving", "error", err)
		return r.config
	}
	r.config, r.stamp = cfg, stamp
	r.log.Info("TLS files reloaded", "cert", r.files.cert, "client_ca", r.files.clientCA)
	return r.config
}

// stampFiles summarises the files' identity, so that a change is noticed
// whatever way it was made.
func (r *tlsReloader) stampFiles() (string, error) {
	var stamp string
	for _, p := range []string{r.files.cert, r.files.key, r.files.clientCA} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

func (r *tlsReloader) load() (*tls.Config, string, error) {
	stamp, err := r.stampFiles()
	if err != nil {
		return nil, "", fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.files.cert, r.files.key)
	if err != nil {
		return nil, "", fmt.Errorf("--tls-cert-file %s / --tls-key-file %s: %w", r.files.cert, r.files.key, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if r.files.clientCA != "" {
		pem, err := os.ReadFile(r.files.clientCA)
		if err != nil {
			return nil, "", fmt.Errorf("--client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("--client-ca-file %s: no PEM certificate in it", r.files.clientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, stamp, nil
}

// validate checks that the TLS flags make sense together.
func (f tlsFiles) validate() error {
	switch {
	case f.cert == "" && f.key == "" && f.clientCA == "":
		return nil
	case f.cert == "" || f.key == "":
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	return nil
}

func (f tlsFiles) enabled() bool { return f.cert != "" }

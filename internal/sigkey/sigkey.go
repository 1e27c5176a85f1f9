// Package sigkey parses the public keys that module signatures are checked
// with: the PEM keys `cosign generate-key-pair` writes (ECDSA P-256), and any
// other ECDSA, RSA or Ed25519 key in PKIX PEM form. The catalog uses it to
// validate a WasmPlugin's verificationKey, the fetcher to verify with it.
package sigkey

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// ErrInvalid is wrapped by every Parse error.
var ErrInvalid = errors.New("invalid verification key")

// Key is a parsed public key.
type Key struct {
	// PEM is the key re-encoded in canonical PKIX PEM form, so that equal
	// keys compare equal whatever their original spelling.
	PEM string
	// Fingerprint is "sha256:" and the hex sha256 of the key's DER
	// encoding: how logs, status and the cache name a key.
	Fingerprint string
	// Verifier checks signatures made with the key's private half over
	// the SHA-256 digest of a payload, as cosign makes them.
	Verifier signature.Verifier
}

// Parse parses one PEM-encoded public key.
func Parse(pemText string) (Key, error) {
	if strings.TrimSpace(pemText) == "" {
		return Key{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pemText))
	if err != nil {
		return Key{}, fmt.Errorf("%w: not a PEM public key: %w", ErrInvalid, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	canonical, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sum := sha256.Sum256(der)
	return Key{PEM: string(canonical), Fingerprint: "sha256:" + hex.EncodeToString(sum[:]), Verifier: v}, nil
}

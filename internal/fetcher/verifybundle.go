package fetcher

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/wasmxds/wasmxds/internal/sigkey"
)

const (
	// bundleTypePrefix starts the artifact type of Sigstore bundles
	// (application/vnd.dev.sigstore.bundle.v0.3+json and later).
	bundleTypePrefix = "application/vnd.dev.sigstore.bundle"
	// cosignSignPredicate is the in-toto predicate type of the statement
	// cosign sign --new-bundle-format signs: "this image is signed".
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	// maxBundles bounds the bundle referrers looked at per manifest.
	maxBundles = 32
	// maxBundleSize bounds one bundle; a key-signed one is a few KiB.
	maxBundleSize = 1 << 20
)

// sigFindings collects, across signature forms, what was seen of
// signatures that did not verify.
type sigFindings struct {
	found int      // signatures of any key seen
	bad   []string // why signatures made with the key do not count
}

// verdict is the refusal when no signature verified.
func (s sigFindings) verdict(digest string, key sigkey.Key) error {
	switch {
	case s.found == 0:
		return fmt.Errorf("%w: manifest %s has no signature (no %s tag, no Sigstore bundle referrer)",
			ErrUnsigned, digest, signatureTag(digest))
	case len(s.bad) > 0:
		return fmt.Errorf("%w: manifest %s: %s", ErrBadSignature, digest, strings.Join(s.bad, "; "))
	}
	return fmt.Errorf("%w: none of the %d signatures of manifest %s was made with key %s",
		ErrKeyMismatch, s.found, digest, key.Fingerprint)
}

// checkBundles looks for Sigstore bundles attached to manifest digest as
// OCI referrers (the referrers API, or its tag-schema fallback) and
// reports whether one verifies with key: a DSSE envelope signed with the
// key whose in-toto statement is cosign's signing statement about digest.
// Bundles need no transparency log entry or timestamp here: the key alone
// is trusted.
func checkBundles(ctx context.Context, repo *remote.Repository, digest string, key sigkey.Key, seen *sigFindings) (bool, error) {
	bundles, err := bundleReferrers(ctx, repo, digest)
	if err != nil {
		return false, err
	}
	v, err := bundleVerifier(key)
	if err != nil {
		return false, err
	}
	sum, err := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
	if err != nil {
		return false, fmt.Errorf("%w: manifest digest %s", ErrUnsupported, digest)
	}
	for _, d := range bundles {
		b, isBundle, err := fetchBundle(ctx, repo, d)
		if err != nil {
			return false, err
		}
		if !isBundle {
			continue
		}
		seen.found++
		if b == nil {
			seen.bad = append(seen.bad, "a Sigstore bundle is unreadable")
			continue
		}
		if ok, problem := checkBundle(v, b, sum); ok {
			return true, nil
		} else if problem != "" {
			seen.bad = append(seen.bad, problem)
		}
	}
	return false, nil
}

// bundleReferrers lists the referrers of digest that may be Sigstore
// bundles: those whose artifact type says so, and those whose type says
// nothing, as go-containerregistry (hence cosign) records a referrer in the
// tag-schema fallback index under its empty config's type.
func bundleReferrers(ctx context.Context, repo *remote.Repository, digest string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: ocispecDigest(digest)}
	err := repo.Referrers(ctx, subject, "", func(refs []ocispec.Descriptor) error {
		for _, r := range refs {
			maybe := r.ArtifactType == "" || r.ArtifactType == ocispec.MediaTypeEmptyJSON
			if (maybe || strings.HasPrefix(r.ArtifactType, bundleTypePrefix)) && len(out) < maxBundles {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", digest, classify(err))
	}
	return out, nil
}

// fetchBundle reads the bundle a referrer manifest holds. isBundle is false
// for a referrer that is no bundle; b is nil for one that cannot be parsed.
func fetchBundle(ctx context.Context, repo *remote.Repository, d ocispec.Descriptor) (b *bundle.Bundle, isBundle bool, err error) {
	body, err := fetchManifest(ctx, repo, d)
	if err != nil {
		return nil, false, err
	}
	doc, err := parseManifest(d, body)
	if err != nil || len(doc.Layers) != 1 || !strings.HasPrefix(doc.Layers[0].MediaType, bundleTypePrefix) {
		return nil, strings.HasPrefix(d.ArtifactType, bundleTypePrefix), nil
	}
	if doc.Layers[0].Size > maxBundleSize {
		return nil, true, nil
	}
	raw, err := fetchPayloadLimit(ctx, repo, doc.Layers[0], maxBundleSize)
	if err != nil {
		return nil, true, err
	}
	b = &bundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, true, nil
	}
	return b, true, nil
}

// bundleVerifier trusts key alone, at any time.
func bundleVerifier(key sigkey.Key) (*verify.Verifier, error) {
	k := root.NewExpiringKey(key.Verifier, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return k, nil })
	v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return v, nil
}

// checkBundle verifies one bundle: first that the key signed it (else it
// is another signer's, not a problem), then that what it signed is cosign's
// signing statement about the manifest.
func checkBundle(v *verify.Verifier, b *bundle.Bundle, sum []byte) (ok bool, problem string) {
	if _, err := v.Verify(b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithKey())); err != nil {
		return false, ""
	}
	res, err := v.Verify(b, verify.NewPolicy(verify.WithArtifactDigest("sha256", sum), verify.WithKey()))
	switch {
	case err != nil:
		return false, "a Sigstore bundle signed with the key is about other content"
	case res.Statement == nil:
		return false, "a Sigstore bundle signed with the key holds no in-toto statement"
	case res.Statement.PredicateType != cosignSignPredicate:
		return false, fmt.Sprintf("a Sigstore bundle signed with the key is a %s attestation, not a signature", res.Statement.PredicateType)
	}
	return true, ""
}

package fetcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/wasmxds/wasmxds/internal/sigkey"
)

// Where cosign keeps a signature of manifest sha256:<hex> in the same
// repository: the tag sha256-<hex>.sig names a manifest whose layers are
// simple-signing payloads, each with its base64 signature in an annotation.
const (
	cosignSigTagSuffix  = ".sig"
	cosignSigAnnotation = "dev.cosignproject.cosign/signature"
	// maxSignatures bounds the layers looked at in one signature manifest
	// (cosign appends one per signing).
	maxSignatures = 64
	// maxPayloadSize bounds one simple-signing payload; cosign's are a few
	// hundred bytes.
	maxPayloadSize = 64 << 10
)

// signatureTag is the tag cosign stores the signatures of digest under.
func signatureTag(digest string) string {
	return strings.Replace(digest, ":", "-", 1) + cosignSigTagSuffix
}

// checkSignature verifies that manifest digest of repo carries a cosign
// signature made with key: under the digest's .sig tag (a simple-signing
// payload naming the digest), or as a Sigstore bundle referrer (see
// checkBundles). It needs the registry only: no transparency log, no
// certificate authority. Errors wrap ErrUnsigned, ErrBadSignature,
// ErrKeyMismatch, or the registry's failure.
func checkSignature(ctx context.Context, repo *remote.Repository, digest string, key sigkey.Key) error {
	var seen sigFindings
	ok, err := checkSigTag(ctx, repo, digest, key, &seen)
	if err == nil && !ok {
		ok, err = checkBundles(ctx, repo, digest, key, &seen)
	}
	switch {
	case err != nil:
		return fmt.Errorf("signature of %s: %w", digest, err)
	case ok:
		return nil
	}
	return seen.verdict(digest, key)
}

// checkSigTag checks the signatures under the .sig tag of digest.
func checkSigTag(ctx context.Context, repo *remote.Repository, digest string, key sigkey.Key, seen *sigFindings) (bool, error) {
	desc, body, err := fetchManifestRef(ctx, repo, signatureTag(digest))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	doc, err := parseManifest(desc, body)
	if err != nil {
		return false, err
	}
	for _, l := range signatureLayers(doc) {
		seen.found++
		ok, problem, err := checkOne(ctx, repo, l, digest, key)
		switch {
		case err != nil:
			return false, err
		case ok:
			return true, nil
		case problem != "" && !slices.Contains(seen.bad, problem):
			seen.bad = append(seen.bad, problem)
		}
	}
	return false, nil
}

// signatureLayers lists the layers carrying a signature annotation.
func signatureLayers(doc manifestDoc) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, l := range doc.Layers {
		if l.Annotations[cosignSigAnnotation] != "" && len(out) < maxSignatures {
			out = append(out, l)
		}
	}
	return out
}

// checkOne checks one signature layer: ok when key signed a payload naming
// digest; problem says why a payload signed with key does not count, or why
// the signature is unreadable. A signature by another key is neither.
func checkOne(ctx context.Context, repo *remote.Repository, l ocispec.Descriptor, digest string, key sigkey.Key) (ok bool, problem string, err error) {
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignSigAnnotation])
	if err != nil {
		return false, "a signature is not base64", nil
	}
	body, err := fetchPayload(ctx, repo, l)
	if err != nil {
		return false, "", err
	}
	if key.Verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) != nil {
		return false, "", nil
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(body, &p); err != nil {
		return false, "the signed payload is not simple-signing JSON", nil
	}
	if p.Critical.Type != payload.CosignSignatureType {
		return false, fmt.Sprintf("the signed payload has type %q, not %q", p.Critical.Type, payload.CosignSignatureType), nil
	}
	if got := p.Critical.Image.DockerManifestDigest; got != digest {
		return false, fmt.Sprintf("the signed payload names manifest %s", got), nil
	}
	return true, "", nil
}

// fetchPayload reads a signature layer, checking its size and digest.
func fetchPayload(ctx context.Context, repo *remote.Repository, l ocispec.Descriptor) ([]byte, error) {
	return fetchPayloadLimit(ctx, repo, l, maxPayloadSize)
}

// fetchPayloadLimit reads a small blob of at most limit bytes, checking
// its digest.
func fetchPayloadLimit(ctx context.Context, repo *remote.Repository, l ocispec.Descriptor, limit int64) ([]byte, error) {
	if l.Size > limit {
		return nil, fmt.Errorf("%w: signature payload of %d bytes", ErrTooLarge, l.Size)
	}
	rc, err := repo.Fetch(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("signature payload %s: %w", l.Digest, classify(err))
	}
	defer rc.Close()
	b, err := content.ReadAll(rc, l)
	if err != nil {
		return nil, fmt.Errorf("signature payload %s: %w", l.Digest, classify(err))
	}
	return b, nil
}

// verificationKey parses a Request's key; nil when it has none.
func verificationKey(req Request, src source) (*sigkey.Key, error) {
	if req.VerificationKey == "" {
		return nil, nil
	}
	if src.kind != kindOCI {
		return nil, fmt.Errorf("%w: a verification key needs an oci:// module; http(s) and file modules carry no signatures",
			ErrSignature)
	}
	k, err := sigkey.Parse(req.VerificationKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return &k, nil
}

// verifiedWith reports whether r's manifest was verified with key (always
// true when there is no key to verify with).
func verifiedWith(r refEntry, key *sigkey.Key) bool {
	return key == nil || slices.Contains(r.Verified, key.Fingerprint)
}

// ocispecDigest is a "sha256:<hex>" string as a descriptor digest.
func ocispecDigest(s string) digest.Digest { return digest.Digest(s) }

// fingerprint is key's, or "" without a key.
func fingerprint(key *sigkey.Key) string {
	if key == nil {
		return ""
	}
	return key.Fingerprint
}

// VerifySignature checks against the registry that the OCI manifest
// req.URL resolves to now carries a cosign signature made with
// req.VerificationKey (required). The module is neither pulled nor cached. It returns the manifest digest checked; errors wrap ErrSignature
// (or its ErrUnsigned, ErrBadSignature, ErrKeyMismatch) when the signature
// is refused, other sentinels when the check could not be made.
func (f *Fetcher) VerifySignature(ctx context.Context, req Request) (string, error) {
	src, err := parseSource(req.URL)
	if err != nil {
		return "", err
	}
	if req.VerificationKey == "" {
		return "", fmt.Errorf("%s: %w: no verification key", src.key, ErrSignature)
	}
	key, err := verificationKey(req, src)
	if err != nil {
		return "", fmt.Errorf("%s: %w", src.key, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.PullTimeout)
	defer cancel()
	repo, err := f.repository(src.ref, req.PullSecret)
	if err != nil {
		return "", fmt.Errorf("%s: %w", src.key, err)
	}
	desc, err := resolveOCI(ctx, repo, src.ref)
	if err != nil {
		return "", f.secrets.redact(fmt.Errorf("%s: %w", src.key, err))
	}
	digest := desc.Digest.String()
	if err := checkSignature(ctx, repo, digest, *key); err != nil {
		return digest, f.secrets.redact(fmt.Errorf("%s: %w", src.key, err))
	}
	return digest, nil
}

package fetcher

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

// PEM types of the encrypted private keys cosign generate-key-pair writes
// (newer and older cosign).
const (
	sigstoreKeyPEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
	cosignKeyPEM   = "ENCRYPTED COSIGN PRIVATE KEY"
	// mediaTypeSimpleSigning is the layer type of cosign's signature payloads.
	mediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
)

// SignKey is a private key that signs pushed modules as cosign sign --key
// does.
type SignKey struct {
	signer signature.Signer
}

// LoadSignKey decrypts a private key file written by cosign
// generate-key-pair with its password (empty when it has none).
func LoadSignKey(pemBytes, password []byte) (*SignKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || (block.Type != sigstoreKeyPEM && block.Type != cosignKeyPEM) {
		return nil, errors.New("not a cosign private key (want the PEM cosign generate-key-pair writes)")
	}
	der, err := encrypted.Decrypt(block.Bytes, password)
	if err != nil {
		return nil, fmt.Errorf("decrypt the signing key (wrong password?): %w", err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s, err := signature.LoadSigner(pk, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &SignKey{signer: s}, nil
}

// sign attaches to repo a cosign signature of manifest digest: a
// simple-signing payload naming it, signed with k, as one more layer of the
// manifest under the digest's .sig tag (other signers' layers are kept).
func (k *SignKey) sign(ctx context.Context, repo *remote.Repository, digest string) error {
	body, err := json.Marshal(payload.SimpleContainerImage{Critical: payload.Critical{
		Identity: payload.Identity{DockerReference: repo.Reference.Registry + "/" + repo.Reference.Repository},
		Image:    payload.Image{DockerManifestDigest: digest},
		Type:     payload.CosignSignatureType,
	}})
	if err != nil {
		return err
	}
	sig, err := k.signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	layer := content.NewDescriptorFromBytes(mediaTypeSimpleSigning, body)
	if err := pushBlob(ctx, repo, layer, body); err != nil {
		return err
	}
	layer.Annotations = map[string]string{cosignSigAnnotation: base64.StdEncoding.EncodeToString(sig)}
	tag := signatureTag(digest)
	layers := append(existingSignatures(ctx, repo, tag), layer)
	return pushSignatureManifest(ctx, repo, tag, layers)
}

// existingSignatures lists the signature layers already under tag.
func existingSignatures(ctx context.Context, repo *remote.Repository, tag string) []ocispec.Descriptor {
	desc, body, err := fetchManifestRef(ctx, repo, tag)
	if err != nil {
		return nil
	}
	doc, err := parseManifest(desc, body)
	if err != nil {
		return nil
	}
	return signatureLayers(doc)
}

func pushSignatureManifest(ctx context.Context, repo *remote.Repository, tag string, layers []ocispec.Descriptor) error {
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.Digest.String()
	}
	cfgBody, err := json.Marshal(map[string]any{"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	if err != nil {
		return err
	}
	cfg := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cfgBody)
	if err := pushBlob(ctx, repo, cfg, cfgBody); err != nil {
		return err
	}
	manifest, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers})
	if err != nil {
		return err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifest)
	return repo.PushReference(ctx, desc, bytes.NewReader(manifest), tag)
}

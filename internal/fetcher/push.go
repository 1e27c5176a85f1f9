package fetcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// PushOptions configure Push. The zero value pushes with default
// credentials, plain HTTP only to localhost registries, default retries.
type PushOptions struct {
	InsecureRegistries []string          // host or host:port spoken to over plain HTTP
	DockerConfig       string            // "" = $DOCKER_CONFIG or ~/.docker/config.json
	Transport          http.RoundTripper // nil = default transport
	Retry              RetryPolicy
	Title              string       // org.opencontainers.image.title of the layer, e.g. the file name
	Logger             *slog.Logger // preflight warnings go here; nil = slog.Default()
	// SignKey, when set, signs the pushed manifest as cosign sign --key
	// does (see LoadSignKey): no transparency log entry is made.
	SignKey *SignKey
}

// wasmConfig is the artifact's config blob; proxies read nothing from it.
var wasmConfig = []byte("{}")

// Push verifies module (as Resolve would) and publishes it as a Wasm OCI
// artifact at ref (oci:// optional; a missing tag means latest): config
// MediaTypeWasmConfig, one MediaTypeWasmLayer layer. It returns the
// manifest digest ("sha256:..."). The manifest carries no timestamp, so
// pushing the same bytes again yields the same digest.
func Push(ctx context.Context, module []byte, ref string, opts PushOptions) (string, error) {
	report, err := Preflight(ctx, module)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if len(report.Warnings) > 0 {
		log := opts.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		log.Warn("module preflight incomplete", "component", "push", "ref", ref, "warnings", report.Warnings)
	}
	src, err := parseOCI(ref)
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	repo, err := pushRepository(src, opts)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", src.key, err)
	}
	desc, err := pushArtifact(ctx, repo, module, opts.Title, src.ref.Reference)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", src.key, classify(err))
	}
	if opts.SignKey != nil {
		if err := opts.SignKey.sign(ctx, repo, desc.Digest.String()); err != nil {
			return desc.Digest.String(), fmt.Errorf("push %s: signature: %w", src.key, classify(err))
		}
	}
	return desc.Digest.String(), nil
}

func pushRepository(src source, opts PushOptions) (*remote.Repository, error) {
	store, err := credentialStore(opts.DockerConfig)
	if err != nil {
		return nil, err
	}
	client := &auth.Client{
		// Push goes where the operator's command says, never where a spec
		// does, so metadata addresses are not refused.
		Client:     newHTTPClient(opts.Transport, opts.Retry, netPolicy{allowLinkLocal: true}),
		Credential: credentials.Credential(store),
		Cache:      auth.NewCache(),
	}
	client.SetUserAgent("wasmxds")
	return &remote.Repository{Reference: src.ref, Client: client,
		PlainHTTP: plainHTTP(src.ref.Registry, opts.InsecureRegistries)}, nil
}

func pushArtifact(ctx context.Context, repo *remote.Repository, module []byte, title, tag string) (ocispec.Descriptor, error) {
	cfg := content.NewDescriptorFromBytes(MediaTypeWasmConfig, wasmConfig)
	layer := content.NewDescriptorFromBytes(MediaTypeWasmLayer, module)
	for _, blob := range []struct {
		desc ocispec.Descriptor
		b    []byte
	}{{cfg, wasmConfig}, {layer, module}} {
		if err := pushBlob(ctx, repo, blob.desc, blob.b); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if title != "" {
		layer.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ocispec.Descriptor{layer},
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifest)
	if err := repo.PushReference(ctx, desc, bytes.NewReader(manifest), tag); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

func pushBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, b []byte) error {
	if ok, err := repo.Exists(ctx, desc); err == nil && ok {
		return nil
	}
	return repo.Push(ctx, desc, io.NopCloser(bytes.NewReader(b)))
}

package fetcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/wasmxds/wasmxds/internal/sigkey"
)

// Media types of Wasm OCI artifacts.
const (
	// MediaTypeWasmConfig is the config of a Wasm OCI artifact.
	MediaTypeWasmConfig = "application/vnd.module.wasm.config.v1+json"
	// MediaTypeWasmLayer is the layer holding the module itself.
	MediaTypeWasmLayer = "application/vnd.module.wasm.content.layer.v1+wasm"

	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	// annotationRefType marks BuildKit attestation manifests inside indexes.
	annotationRefType = "vnd.docker.reference.type"
	maxManifestSize   = 4 << 20
	maxIndexEntries   = 64
)

// manifestDoc covers the fields of image manifests, indexes and the older
// artifact manifest that locating a module needs.
type manifestDoc struct {
	MediaType string               `json:"mediaType"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Blobs     []ocispec.Descriptor `json:"blobs"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

// ociTarget is what an OCI pull needs: the repository, the reference and,
// when it was already resolved, the manifest descriptor.
type ociTarget struct {
	repo *remote.Repository
	ref  registry.Reference
	desc ocispec.Descriptor
	// key, when set, must have signed the manifest the reference names.
	key *sigkey.Key
}

// headOCI prepares a pull. With a cached resolution prev, it resolves the
// reference (HEAD) and reports whether it still names prev's manifest.
func (f *Fetcher) headOCI(ctx context.Context, src source, req Request, prev refEntry, hasPrev bool) (ociTarget, bool, error) {
	repo, err := f.repository(src.ref, req.PullSecret)
	if err != nil {
		return ociTarget{}, false, err
	}
	o := ociTarget{repo: repo, ref: src.ref}
	if hasPrev && prev.ManifestDigest != "" {
		if o.desc, err = resolveOCI(ctx, repo, src.ref); err != nil {
			return o, false, err
		}
		return o, o.desc.Digest.String() == prev.ManifestDigest, nil
	}
	return o, false, nil
}

// resolveOCI returns the manifest descriptor ref currently points at (HEAD).
func resolveOCI(ctx context.Context, repo *remote.Repository, ref registry.Reference) (ocispec.Descriptor, error) {
	desc, err := repo.Resolve(ctx, ref.Reference)
	if err != nil {
		return ocispec.Descriptor{}, classify(err)
	}
	return desc, nil
}

// pullOCI pulls the module o names into sp and returns its resolution:
// the digest the reference resolved to, and every manifest digest on the
// way (index, chosen child) that a pin may name. Without a resolved
// descriptor the reference is fetched with a single manifest GET.
func (f *Fetcher) pullOCI(ctx context.Context, o ociTarget, sp *spool) (refEntry, error) {
	desc := o.desc
	var body []byte
	var err error
	if desc.Digest == "" {
		desc, body, err = fetchManifestRef(ctx, o.repo, o.ref.Reference)
	} else {
		body, err = fetchManifest(ctx, o.repo, desc)
	}
	if err != nil {
		return refEntry{}, err
	}
	r := refEntry{ManifestDigest: desc.Digest.String(), Digests: []string{desc.Digest.String()}}
	if o.key != nil {
		// Before any layer is downloaded: unsigned content costs a
		// manifest, not a module.
		if err := checkSignature(ctx, o.repo, r.ManifestDigest, *o.key); err != nil {
			return refEntry{}, err
		}
		r.Verified = []string{o.key.Fingerprint}
	}
	doc, err := parseManifest(desc, body)
	if err != nil {
		return refEntry{}, err
	}
	if isIndex(desc.MediaType, doc) {
		var child ocispec.Descriptor
		child, doc, err = chooseFromIndex(ctx, o.repo, doc)
		if err != nil {
			return refEntry{}, err
		}
		r.Digests = append(r.Digests, child.Digest.String())
	}
	return r, f.moduleFromManifest(ctx, o.repo, doc, sp)
}

func fetchManifestRef(ctx context.Context, repo *remote.Repository, reference string) (ocispec.Descriptor, []byte, error) {
	desc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil {
		return ocispec.Descriptor{}, nil, classify(err)
	}
	defer rc.Close()
	body, err := readManifest(rc, desc)
	return desc, body, err
}

func fetchManifest(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrTooLarge, desc.Size)
	}
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		return nil, classify(err)
	}
	defer rc.Close()
	return readManifest(rc, desc)
}

func readManifest(rc io.Reader, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrTooLarge, desc.Size)
	}
	body, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, classify(err))
	}
	return body, nil
}

func parseManifest(desc ocispec.Descriptor, body []byte) (manifestDoc, error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return doc, fmt.Errorf("%w: manifest %s is not valid JSON: %w", ErrUnsupported, desc.Digest, err)
	}
	if doc.MediaType == "" {
		doc.MediaType = desc.MediaType
	}
	if len(doc.Layers) == 0 {
		doc.Layers = doc.Blobs // artifact manifests list their content as blobs
	}
	return doc, nil
}

func isIndex(mediaType string, doc manifestDoc) bool {
	switch mediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		return true
	}
	return doc.MediaType == ocispec.MediaTypeImageIndex || doc.MediaType == mediaTypeDockerManifestList ||
		(len(doc.Manifests) > 0 && len(doc.Layers) == 0)
}

// chooseFromIndex fetches the index entries that may hold a module and
// picks the one that does (see pickChild).
func chooseFromIndex(ctx context.Context, repo *remote.Repository, index manifestDoc) (ocispec.Descriptor, manifestDoc, error) {
	cands, err := indexCandidates(index)
	if err != nil {
		return ocispec.Descriptor{}, manifestDoc{}, err
	}
	children := make([]indexChild, 0, len(cands))
	for _, d := range cands {
		body, err := fetchManifest(ctx, repo, d)
		if err != nil {
			return ocispec.Descriptor{}, manifestDoc{}, err
		}
		doc, err := parseManifest(d, body)
		if err != nil {
			return ocispec.Descriptor{}, manifestDoc{}, err
		}
		children = append(children, indexChild{d, doc})
	}
	c, err := pickChild(children)
	return c.desc, c.doc, err
}

// indexCandidates lists the index entries worth fetching: image manifests
// that are not attestations (nested indexes and unknown types are skipped).
func indexCandidates(index manifestDoc) ([]ocispec.Descriptor, error) {
	if len(index.Manifests) > maxIndexEntries {
		return nil, fmt.Errorf("%w: index lists %d manifests (limit %d)",
			ErrUnsupported, len(index.Manifests), maxIndexEntries)
	}
	var out []ocispec.Descriptor
	for _, d := range index.Manifests {
		if d.Annotations[annotationRefType] != "" || (d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != mediaTypeDockerManifest) {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// pickChild picks the one child manifest that holds a module. Children
// carrying Wasm layers win over image children; image children (one per
// platform) are interchangeable only if their layers are identical, which
// is what a FROM scratch multi-platform build produces.
func pickChild(children []indexChild) (indexChild, error) {
	var wasm, images []indexChild
	for _, c := range children {
		if c.hasWasm() {
			wasm = append(wasm, c)
		} else if len(c.doc.Layers) > 0 {
			images = append(images, c)
		}
	}
	for _, group := range [][]indexChild{wasm, images} {
		if len(group) == 0 {
			continue
		}
		if distinct := distinctLayerSets(group); len(distinct) > 1 {
			return indexChild{}, fmt.Errorf("%w: image index holds %d different modules (%s); reference one manifest by digest",
				ErrAmbiguous, len(distinct), strings.Join(distinct, ", "))
		}
		return group[0], nil
	}
	return indexChild{}, fmt.Errorf("%w: image index holds no manifest with a module", ErrNotFound)
}

type indexChild struct {
	desc ocispec.Descriptor
	doc  manifestDoc
}

func (c indexChild) hasWasm() bool {
	if c.doc.Config != nil && c.doc.Config.MediaType == MediaTypeWasmConfig {
		return true
	}
	for _, l := range c.doc.Layers {
		if l.MediaType == MediaTypeWasmLayer {
			return true
		}
	}
	return false
}

// distinctLayerSets names each distinct layer list by the manifests having it.
func distinctLayerSets(children []indexChild) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range children {
		var key []string
		for _, l := range c.doc.Layers {
			if l.MediaType != MediaTypeWasmConfig {
				key = append(key, l.Digest.String())
			}
		}
		k := strings.Join(key, ",")
		if !seen[k] {
			seen[k] = true
			out = append(out, describeChild(c.desc))
		}
	}
	return out
}

func describeChild(d ocispec.Descriptor) string {
	if p := d.Platform; p != nil {
		return fmt.Sprintf("%s (%s/%s)", d.Digest, p.OS, p.Architecture)
	}
	return d.Digest.String()
}

// moduleFromManifest writes the module of a manifest to sp, trying the
// layers layerCandidates lists in order.
func (f *Fetcher) moduleFromManifest(ctx context.Context, repo *remote.Repository, doc manifestDoc, sp *spool) error {
	layers, err := layerCandidates(doc)
	if err != nil {
		return err
	}
	var firstErr error
	for i, l := range layers {
		if i > 0 {
			if err := sp.reset(); err != nil {
				return err
			}
		}
		err := f.fetchLayer(ctx, repo, l, sp)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if !errors.Is(err, errNoPluginFile) && !errors.Is(err, errUnrecognized) {
			return err
		}
	}
	return firstErr
}

// layerCandidates lists the layers that may hold the module. A Wasm layer
// wins; otherwise every layer but a config, from the topmost down, each
// being either the module itself or a tar/tar+gzip holding plugin.wasm, as
// the topmost copy of a file is what a container would see.
func layerCandidates(doc manifestDoc) ([]ocispec.Descriptor, error) {
	var wasmLayers []ocispec.Descriptor
	for _, l := range doc.Layers {
		if l.MediaType == MediaTypeWasmLayer && !containsDigest(wasmLayers, l) {
			wasmLayers = append(wasmLayers, l)
		}
	}
	switch {
	case len(wasmLayers) > 1:
		return nil, fmt.Errorf("%w: manifest has %d different %s layers", ErrAmbiguous, len(wasmLayers), MediaTypeWasmLayer)
	case len(wasmLayers) == 1:
		return wasmLayers, nil
	}
	var out []ocispec.Descriptor
	for i := len(doc.Layers) - 1; i >= 0; i-- {
		if doc.Layers[i].MediaType != MediaTypeWasmConfig {
			out = append(out, doc.Layers[i])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: manifest has no layers", ErrNotFound)
	}
	return out, nil
}

func containsDigest(ds []ocispec.Descriptor, d ocispec.Descriptor) bool {
	for _, x := range ds {
		if x.Digest == d.Digest {
			return true
		}
	}
	return false
}

// fetchLayer streams one blob through digest verification and extraction
// into sp.
func (f *Fetcher) fetchLayer(ctx context.Context, repo *remote.Repository, l ocispec.Descriptor, sp *spool) error {
	limit := f.maxSize
	if l.MediaType != MediaTypeWasmLayer {
		limit = archiveExpansion * f.maxSize // compressed archives may hold more than the module
	}
	if l.Size > limit {
		return fmt.Errorf("%w: layer %s is %d bytes, limit %d", ErrTooLarge, l.Digest, l.Size, limit)
	}
	rc, err := repo.Fetch(ctx, l)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, classify(err))
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, l)
	if err := extractModule(vr, f.maxSize, sp); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, classify(err))
	}
	// The rest of an archive still has to match the layer digest.
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, classify(err))
	}
	if err := vr.Verify(); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, classify(err))
	}
	return nil
}

package fetcher

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzExtractModule feeds arbitrary bytes to the unpacker (raw module, tar,
// tar+gzip). It must not panic; what it extracts is a Wasm module within
// the cap; a failure wraps one of this package's sentinels, or is a
// truncated stream, which classify reports as the source's fault.
func FuzzExtractModule(f *testing.F) {
	const max = 1 << 10 // small, so that inputs reach the caps
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		err := extractModule(bytes.NewReader(data), max, &out)
		if err != nil {
			if !hasSentinel(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !isWasm(out.Bytes()) || out.Len() > max {
			t.Fatalf("extracted %d bytes starting %x", out.Len(), out.Bytes()[:min(8, out.Len())])
		}
	})
}

// FuzzManifest parses a manifest or index, and for an index two child
// manifests standing for its entries (alternately), then runs the offline
// selection: index entries to fetch, the child to use, and the layers to
// try. Whatever it picks must come from its input and satisfy the rules.
func FuzzManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, mediaType string, body, child1, child2 []byte) {
		doc, err := parseManifest(ocispec.Descriptor{MediaType: mediaType}, body)
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("parse error wraps no sentinel: %v", err)
			}
			return
		}
		if isIndex(mediaType, doc) {
			checkIndexSelection(t, doc, [][]byte{child1, child2})
			return
		}
		checkLayerSelection(t, doc)
	})
}

func checkIndexSelection(t *testing.T, index manifestDoc, bodies [][]byte) {
	cands, err := indexCandidates(index)
	if err != nil {
		if !errors.Is(err, ErrUnsupported) || len(index.Manifests) <= maxIndexEntries {
			t.Fatalf("indexCandidates: %v", err)
		}
		return
	}
	var children []indexChild
	for i, d := range cands {
		if d.Annotations[annotationRefType] != "" || (d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != mediaTypeDockerManifest) {
			t.Fatalf("candidate %+v is not an image manifest", d)
		}
		doc, err := parseManifest(d, bodies[i%2])
		if err != nil {
			return // the pull fails on an unparsable child
		}
		children = append(children, indexChild{d, doc})
	}
	c, err := pickChild(children)
	if err != nil {
		if !errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("pickChild: %v", err)
		}
		return
	}
	if !slices.ContainsFunc(children, func(x indexChild) bool { return x.desc.Digest == c.desc.Digest }) {
		t.Fatalf("picked %s, not a child", c.desc.Digest)
	}
	if !c.hasWasm() && (len(c.doc.Layers) == 0 || slices.ContainsFunc(children, indexChild.hasWasm)) {
		t.Fatalf("picked %s over a child with a module", c.desc.Digest)
	}
}

func checkLayerSelection(t *testing.T, doc manifestDoc) {
	layers, err := layerCandidates(doc)
	if err != nil {
		if !errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("layerCandidates: %v", err)
		}
		return
	}
	hasWasm := slices.ContainsFunc(doc.Layers, func(l ocispec.Descriptor) bool { return l.MediaType == MediaTypeWasmLayer })
	switch {
	case len(layers) == 0:
		t.Fatal("no layers and no error")
	case hasWasm && (len(layers) != 1 || layers[0].MediaType != MediaTypeWasmLayer):
		t.Fatalf("a Wasm layer exists but %d layers are tried first", len(layers))
	}
	for _, l := range layers {
		if l.MediaType == MediaTypeWasmConfig || !slices.ContainsFunc(doc.Layers, func(x ocispec.Descriptor) bool { return x.Digest == l.Digest }) {
			t.Fatalf("candidate %+v is a config or not a layer", l)
		}
	}
}

package fetcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
	"oras.land/oras-go/v2/content"
)

// attachBundle signs an in-toto statement about subjectHex with kp as a
// Sigstore bundle (no transparency log, no timestamp, as cosign sign
// --new-bundle-format --tlog-upload=false makes it) and attaches it to
// manifest digest of repo as an OCI referrer.
func (tr *testRegistry) attachBundle(t testing.TB, repo, digest, subjectHex, predicate string, kp sign.Keypair) {
	t.Helper()
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": subjectHex}}},
		"predicateType": predicate,
	})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	r := tr.repo(t, repo+":unused")
	descs := pushBlobs(t, r, blob{ocispec.MediaTypeEmptyJSON, []byte("{}")},
		blob{"application/vnd.dev.sigstore.bundle.v0.3+json", raw})
	subject, err := r.Resolve(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json", Config: descs[0], Layers: descs[1:], Subject: &subject})
	if err != nil {
		t.Fatal(err)
	}
	d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m)
	if err := r.Push(context.Background(), d, bytes.NewReader(m)); err != nil {
		t.Fatal(err)
	}
}

func newKeypair(t testing.TB) (sign.Keypair, string) {
	t.Helper()
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.GetPublicKeyPem()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

func TestSigstoreBundleReferrerVerdicts(t *testing.T) {
	tr := newTestRegistry(t)
	kp, pub := newKeypair(t)
	other, _ := newKeypair(t)
	hexOf := func(d string) string { return strings.TrimPrefix(d, "sha256:") }
	good := tr.pushWasm(t, "filters/b:good", validModule(t))
	tr.attachBundle(t, "filters/b", good, hexOf(good), cosignSignPredicate, other) // another signer
	tr.attachBundle(t, "filters/b", good, hexOf(good), cosignSignPredicate, kp)
	elsewhere := tr.pushWasm(t, "filters/b:elsewhere", validModule(t))
	tr.attachBundle(t, "filters/b", elsewhere, hexOf(good), cosignSignPredicate, kp)
	attestation := tr.pushWasm(t, "filters/b:attestation", validModule(t))
	tr.attachBundle(t, "filters/b", attestation, hexOf(attestation), "https://slsa.dev/provenance/v1", kp)
	foreign := tr.pushWasm(t, "filters/b:foreign", validModule(t))
	tr.attachBundle(t, "filters/b", foreign, hexOf(foreign), cosignSignPredicate, other)

	cases := []struct {
		tag   string
		want  error // nil: verified
		words []string
	}{
		{"good", nil, nil},
		{"elsewhere", ErrBadSignature, []string{"about other content"}},
		{"attestation", ErrBadSignature, []string{"https://slsa.dev/provenance/v1 attestation"}},
		{"foreign", ErrKeyMismatch, []string{"none of the 1 signatures"}},
	}
	f := newTestFetcher(t, "", nil)
	for _, c := range cases {
		req := Request{URL: "oci://" + tr.ref("filters/b:"+c.tag), VerificationKey: pub}
		_, err := f.Resolve(context.Background(), req)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v, want verified", c.tag, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.tag, err, c.want)
			continue
		}
		for _, w := range c.words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.tag, err, w)
			}
		}
	}
}

// BenchmarkVerifySignature measures what verification adds to a pull that
// re-resolves a tag: resolving it and checking its signature, in each
// form, against an in-process registry.
func BenchmarkVerifySignature(b *testing.B) {
	tr := newTestRegistry(b)
	k := newSigningKey(b)
	tagged := tr.pushWasm(b, "bench/sig:tag", validModule(b))
	tr.sign(b, "bench/sig", tagged, tagged, k)
	kp, bundlePub := newKeypair(b)
	bundled := tr.pushWasm(b, "bench/sig:bundle", validModule(b))
	tr.attachBundle(b, "bench/sig", bundled, strings.TrimPrefix(bundled, "sha256:"), cosignSignPredicate, kp)
	f := newTestFetcher(b, "", nil)
	for _, c := range []struct{ name, tag, pub string }{{"sig-tag", "tag", k.pubPEM}, {"bundle", "bundle", bundlePub}} {
		b.Run(c.name, func(b *testing.B) {
			req := Request{URL: "oci://" + tr.ref("bench/sig:"+c.tag), VerificationKey: c.pub}
			for b.Loop() {
				if _, err := f.VerifySignature(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

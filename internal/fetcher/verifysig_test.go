package fetcher

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// signingKey is a key pair as cosign generate-key-pair makes (ECDSA P-256).
type signingKey struct {
	priv   *ecdsa.PrivateKey
	pubPEM string
}

func newSigningKey(t testing.TB) signingKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{priv: priv, pubPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
}

// sign attaches to repo a cosign signature by k of a payload naming
// signedDigest, under the .sig tag of digest, the way cosign sign does:
// each signing appends a layer to that tag's manifest.
func (tr *testRegistry) sign(t testing.TB, repo, digest, signedDigest string, k signingKey) {
	t.Helper()
	body, err := json.Marshal(payload.SimpleContainerImage{Critical: payload.Critical{
		Identity: payload.Identity{DockerReference: tr.host + "/" + repo},
		Image:    payload.Image{DockerManifestDigest: signedDigest},
		Type:     payload.CosignSignatureType,
	}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadECDSASignerVerifier(k.priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.SignMessage(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	tr.addSignatureLayer(t, repo, digest, body, base64.StdEncoding.EncodeToString(sig))
}

// addSignatureLayer appends one payload layer with its signature
// annotation to the .sig manifest of digest.
func (tr *testRegistry) addSignatureLayer(t testing.TB, repo, digest string, body []byte, sigB64 string) {
	t.Helper()
	r := tr.repo(t, repo+":"+signatureTag(digest))
	var layers []ocispec.Descriptor
	if _, rc, err := r.FetchReference(context.Background(), signatureTag(digest)); err == nil {
		var m ocispec.Manifest
		if err := json.NewDecoder(rc).Decode(&m); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		layers = m.Layers
	}
	descs := pushBlobs(t, r, blob{ocispec.MediaTypeImageConfig, []byte("{}")},
		blob{"application/vnd.dev.cosign.simplesigning.v1+json", body})
	l := descs[1]
	l.Annotations = map[string]string{cosignSigAnnotation: sigB64}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: descs[0], Layers: append(layers, l)}
	tr.pushJSON(t, r, ocispec.MediaTypeImageManifest, m)
}

func TestSignedModuleIsServedAndCachedAsVerified(t *testing.T) {
	tr := newTestRegistry(t)
	k := newSigningKey(t)
	module := validModule(t)
	digest := tr.pushWasm(t, "filters/signed:v1", module)
	tr.sign(t, "filters/signed", digest, digest, newSigningKey(t)) // another signer's too
	tr.sign(t, "filters/signed", digest, digest, k)
	dir := t.TempDir()
	req := Request{URL: "oci://" + tr.ref("filters/signed:v1"), VerificationKey: k.pubPEM}

	m := mustResolve(t, newTestFetcher(t, dir, nil), req, module)
	if !strings.HasPrefix(m.SignedBy, "sha256:") {
		t.Errorf("SignedBy = %q, want the key's fingerprint", m.SignedBy)
	}
	// A restart answers from the cache: the verification is remembered.
	tr.resetCounts()
	f := newTestFetcher(t, dir, nil)
	if _, ok := f.Cached(req); !ok {
		t.Fatal("a verified module is not answered from the cache after a restart")
	}
	mustResolve(t, f, req, module)
	if n := tr.count("GET manifest") + tr.count("HEAD manifest"); n != 0 {
		t.Errorf("resolving a verified, cached module sent %d manifest requests, want 0", n)
	}
}

func TestModuleRefusedWithTheReason(t *testing.T) {
	tr := newTestRegistry(t)
	k := newSigningKey(t)
	unsigned := tr.pushWasm(t, "filters/m:unsigned", validModule(t))
	other := tr.pushWasm(t, "filters/m:other-key", validModule(t))
	tr.sign(t, "filters/m", other, other, newSigningKey(t))
	copied := tr.pushWasm(t, "filters/m:copied", validModule(t))
	tr.sign(t, "filters/m", copied, unsigned, k) // a signature of other content, moved here
	garbled := tr.pushWasm(t, "filters/m:garbled", validModule(t))
	tr.addSignatureLayer(t, "filters/m", garbled, []byte("{}"), "%%% not base64")

	cases := []struct {
		tag   string
		want  error
		words []string
	}{
		{"unsigned", ErrUnsigned, []string{"unsigned", unsigned, "no signature"}},
		{"other-key", ErrKeyMismatch, []string{"key mismatch", "none of the 1 signatures", other}},
		{"copied", ErrBadSignature, []string{"bad signature", "names manifest " + unsigned}},
		{"garbled", ErrBadSignature, []string{"bad signature", "not base64"}},
	}
	for _, c := range cases {
		t.Run(c.tag, func(t *testing.T) {
			dir := t.TempDir()
			f := newTestFetcher(t, dir, nil)
			tr.resetCounts()
			req := Request{URL: "oci://" + tr.ref("filters/m:"+c.tag), VerificationKey: k.pubPEM}
			_, err := f.Resolve(context.Background(), req)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrSignature) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			for _, w := range c.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if n := tr.count("GET blob") - len(signatureBlobsOf(c.tag)); n > 0 {
				t.Errorf("%d module blobs downloaded before the refusal", n)
			}
			if _, ok := f.Cached(req); ok {
				t.Error("the refused module is answered from the cache")
			}
			if files, _ := filepath.Glob(filepath.Join(dir, "sha256", "*.wasm")); len(files) > 0 {
				t.Errorf("the refused module was written to the cache: %v", files)
			}
		})
	}
}

// signatureBlobsOf is how many signature payloads the case's .sig tag holds.
func signatureBlobsOf(tag string) []int {
	if tag == "unsigned" {
		return nil
	}
	return []int{1}
}

func TestRePushedTagIsRefusedAndTheLastGoodModuleStays(t *testing.T) {
	tr := newTestRegistry(t)
	k := newSigningKey(t)
	good := validModule(t)
	digest := tr.pushWasm(t, "filters/t:v1", good)
	tr.sign(t, "filters/t", digest, digest, k)
	f := newTestFetcher(t, "", nil)
	req := Request{URL: "oci://" + tr.ref("filters/t:v1"), VerificationKey: k.pubPEM, Always: true}
	mustResolve(t, f, req, good)

	tampered := tr.pushWasm(t, "filters/t:v1", validModule(t))
	m, err := f.Resolve(context.Background(), req)
	if !errors.Is(err, ErrStale) || !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), tampered) {
		t.Fatalf("err = %v, want the last good module kept (ErrStale) and %s refused as unsigned", err, tampered)
	}
	if m.SHA256 != sha(good) {
		t.Errorf("served sha256:%s, want the last good sha256:%s", m.SHA256, sha(good))
	}
}

func TestAddingAKeyReverifiesACachedModule(t *testing.T) {
	tr := newTestRegistry(t)
	k := newSigningKey(t)
	signed, unsigned := validModule(t), validModule(t)
	digest := tr.pushWasm(t, "filters/c:signed", signed)
	tr.sign(t, "filters/c", digest, digest, k)
	tr.pushWasm(t, "filters/c:unsigned", unsigned)
	f := newTestFetcher(t, "", nil)
	for _, tag := range []string{"signed", "unsigned"} {
		f.Resolve(context.Background(), Request{URL: "oci://" + tr.ref("filters/c:"+tag)})
	}

	tr.resetCounts()
	withKey := func(tag string) Request {
		return Request{URL: "oci://" + tr.ref("filters/c:"+tag), VerificationKey: k.pubPEM}
	}
	if _, ok := f.Cached(withKey("signed")); ok {
		t.Fatal("a module cached without verification is answered for a request with a key")
	}
	mustResolve(t, f, withKey("signed"), signed)
	if n := tr.count("GET blob"); n != 1 {
		t.Errorf("re-verifying fetched %d blobs, want 1 (the signature payload; the module is cached)", n)
	}
	if _, err := f.Resolve(context.Background(), withKey("unsigned")); !errors.Is(err, ErrUnsigned) || errors.Is(err, ErrStale) {
		t.Errorf("cached unsigned module with a key: err = %v, want ErrUnsigned and no stale stand-in", err)
	}
	// Another key is another verification.
	req := withKey("signed")
	req.VerificationKey = newSigningKey(t).pubPEM
	if _, err := f.Resolve(context.Background(), req); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("another key: err = %v, want ErrKeyMismatch", err)
	}
}

func TestVerificationKeyNeedsAnOCIModuleAndAPublicKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, validModule(t), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newTestFetcher(t, "", nil)
	k := newSigningKey(t)
	for _, req := range []Request{
		{URL: "file://" + path, VerificationKey: k.pubPEM},
		{URL: "oci://127.0.0.1:1/x:v1", VerificationKey: "not a key"},
	} {
		if _, err := f.Resolve(context.Background(), req); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: err = %v, want ErrSignature", req.URL, err)
		}
	}
}

// cosignPrivateKey encrypts k as cosign generate-key-pair writes it.
func cosignPrivateKey(t *testing.T, k signingKey, password string) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: sigstoreKeyPEM, Bytes: enc})
}

func TestPushSignsWhatResolveVerifies(t *testing.T) {
	tr := newTestRegistry(t)
	k := newSigningKey(t)
	if _, err := LoadSignKey(cosignPrivateKey(t, k, "right"), []byte("wrong")); err == nil {
		t.Error("a wrong password decrypted the key")
	}
	sk, err := LoadSignKey(cosignPrivateKey(t, k, "right"), []byte("right"))
	if err != nil {
		t.Fatal(err)
	}
	module := validModule(t)
	tr.sign(t, "filters/p", sha256Digest(t, tr, module), sha256Digest(t, tr, module), newSigningKey(t)) // an earlier signer
	d, err := Push(context.Background(), module, tr.ref("filters/p:v1"), PushOptions{DockerConfig: tr.dockerConfig(t), SignKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	m := mustResolve(t, newTestFetcher(t, "", nil), Request{URL: "oci://" + tr.ref("filters/p:v1"), VerificationKey: k.pubPEM}, module)
	if m.ManifestDigest != d {
		t.Errorf("resolved manifest %s, pushed %s", m.ManifestDigest, d)
	}
	_, body, err := fetchManifestRef(context.Background(), tr.repo(t, "filters/p:x"), signatureTag(d))
	if err != nil {
		t.Fatal(err)
	}
	var sigs ocispec.Manifest
	if err := json.Unmarshal(body, &sigs); err != nil || len(sigs.Layers) != 2 {
		t.Errorf("signature manifest has %d layers (err %v), want the earlier signer's and ours", len(sigs.Layers), err)
	}
}

// sha256Digest is the manifest digest Push gives module, found by pushing
// it once unsigned.
func sha256Digest(t *testing.T, tr *testRegistry, module []byte) string {
	t.Helper()
	return tr.pushWasm(t, "filters/p:probe", module)
}

package sigkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func pemOf(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestParseGivesOneFingerprintPerKeyWhateverTheSpelling(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a, err := Parse(pemOf(t, &k1.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	// Indentation and surrounding blank lines, as a YAML block scalar may leave them.
	b, err := Parse("\n\n" + pemOf(t, &k1.PublicKey) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(pemOf(t, &k2.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint != b.Fingerprint || a.PEM != b.PEM {
		t.Errorf("the same key gives %s and %s", a.Fingerprint, b.Fingerprint)
	}
	if a.Fingerprint == c.Fingerprint {
		t.Errorf("two keys share the fingerprint %s", a.Fingerprint)
	}
	if !strings.HasPrefix(a.Fingerprint, "sha256:") || len(a.Fingerprint) != 7+64 {
		t.Errorf("fingerprint %q is not sha256:<64 hex>", a.Fingerprint)
	}
}

func TestParseRefusesWhatIsNotAPublicKey(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	private := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	for name, in := range map[string]string{
		"empty":       "  \n",
		"not PEM":     "ssh-ed25519 AAAA",
		"private key": private,
		"garbage PEM": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	} {
		if _, err := Parse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

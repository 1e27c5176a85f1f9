package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cosignBin finds the cosign CLI: $COSIGN_BIN, PATH, or .tools/bin (where
// `make deps` installs it). A missing cosign fails the test.
func cosignBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("COSIGN_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	p := filepath.Join(repoRoot(), ".tools/bin/cosign")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("cosign not found (COSIGN_BIN, PATH, %s): run `make deps`", p)
	}
	return p
}

// cosignEnv: keys without a password.
var cosignEnv = []string{"COSIGN_PASSWORD="}

// cosignKeys makes a key pair with cosign generate-key-pair in dir and
// returns the private and public key files.
func cosignKeys(t *testing.T, cosign, dir, name string) (string, string) {
	t.Helper()
	cmd := commandIn(dir, cosign, "generate-key-pair", "--output-key-prefix", name)
	cmd.Env = append(os.Environ(), cosignEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
}

// cosignSign signs the manifest ref (host/repo@sha256:...) with key, the
// way a user without a transparency log does.
func cosignSign(t *testing.T, cosign, key, ref string) {
	t.Helper()
	if _, err := run(cosignEnv, cosign, "sign", "--key", key, "--tlog-upload=false",
		"--allow-insecure-registry", "--yes", ref); err != nil {
		t.Fatalf("cosign sign: %v", err)
	}
}

// pushModule publishes an example filter with wasmxds push and returns
// host/repo@digest.
func pushModule(t *testing.T, filter, repoTag string) string {
	t.Helper()
	out, err := shared.registry.pushWasmxds(nil, filterPath(filter), repoTag)
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(out)
	repo, _, _ := strings.Cut(repoTag, ":")
	return shared.registry.ref(repo) + "@" + digest
}

// wasmxdsVerify runs `wasmxds verify` and returns its output and exit code.
func wasmxdsVerify(t *testing.T, ref, pub string) (string, int) {
	t.Helper()
	out, err := exec.Command(tools.wasmxds, "verify", ref, "--key", pub).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("wasmxds verify: %v", err)
	}
	return string(out), 0
}

// signedPlugin is a WasmPlugin document with a verificationKey.
func signedPlugin(name, url, key, failStrategy string, port int, config map[string]any) string {
	return doc("WasmPlugin", name, map[string]any{
		"url": url, "verificationKey": key, "failStrategy": failStrategy, "imagePullPolicy": "Always",
		"pluginConfig": config, "match": []any{map[string]any{"ports": []any{map[string]any{"number": port}}}},
	})
}

// signingStatus is the part of /debug/status about signatures.
type signingStatus struct {
	Plugins []struct {
		Name            string `json:"name"`
		SHA256          string `json:"sha256"`
		VerificationKey string `json:"verificationKey"`
		SignedBy        string `json:"signedBy"`
		Error           string `json:"error"`
	} `json:"plugins"`
}

// TestSignedModulesWithCosign: modules signed with the real cosign CLI are
// served; unsigned ones, ones signed with another key and a re-pushed tag
// are refused with the reason, the fail strategy applies in a real Envoy,
// and the last good module stays.
func TestSignedModulesWithCosign(t *testing.T) {
	requireFull(t)
	t.Parallel()
	cosign := cosignBin(t)
	keys := t.TempDir()
	aliceKey, alicePub := cosignKeys(t, cosign, keys, "alice")
	malloryKey, _ := cosignKeys(t, cosign, keys, "mallory")

	signed := pushModule(t, "add-header", "signing/mod:v1")
	cosignSign(t, cosign, aliceKey, signed)
	unsigned := pushModule(t, "config-echo", "signing/unsigned:v1")
	other := pushModule(t, "header-logger", "signing/other:v1")
	cosignSign(t, cosign, malloryKey, other)

	// The CLI gives the verdict a serve would.
	for _, c := range []struct {
		ref   string
		code  int
		words []string
	}{
		{shared.registry.ref("signing/mod:v1"), 0, []string{"verified", signed[strings.Index(signed, "@")+1:]}},
		{unsigned, 1, []string{"refused", "unsigned"}},
		{other, 1, []string{"refused", "key mismatch"}},
	} {
		out, code := wasmxdsVerify(t, c.ref, alicePub)
		if code != c.code || !containsAll(strings.ToLower(out), c.words) {
			t.Errorf("wasmxds verify %s: exit %d, output %q; want exit %d mentioning %q", c.ref, code, out, c.code, c.words)
		}
	}

	pub, err := os.ReadFile(alicePub)
	if err != nil {
		t.Fatal(err)
	}
	closedPort := freePort(t)
	up := startUpstream(t)
	f := newSingle(t, serverOptions{args: []string{"--resync", "1s"}}, "signing", map[string]string{
		"alice.pub":   string(pub),
		"closed.yaml": docs(listenerSpec("signing-closed", "signing", closedPort, "signing-closed-up"), clusterSpec("signing-closed-up", up)),
	})
	f.srv.writeSpec(pluginFile, docs(
		signedPlugin("signed", oci("signing/mod:v1"), "file:alice.pub", "FAIL_CLOSE", f.port, addHeader("x-signed", "yes")),
		signedPlugin("unsigned", "oci://"+unsigned, string(pub), "FAIL_OPEN", f.port, map[string]any{"from": "unsigned"}),
		signedPlugin("other-key", "oci://"+other, string(pub), "FAIL_CLOSE", closedPort, map[string]any{}),
	))

	// Signed: runs. Unsigned, FAIL_OPEN: left out, traffic flows without it.
	f.waitFor(t, func() error {
		if err := expectHeader(f.port, "x-signed", "yes")(); err != nil {
			return err
		}
		return expectHeader(f.port, configEchoHeader, "")()
	})
	// Signed with another key, FAIL_CLOSE: the listener refuses requests.
	f.waitFor(t, expectStatus(closedPort, http.StatusForbidden))
	var served string
	eventually(t, applyTimeout, pluginError(f.srv, "unsigned", &served, "unsigned", "no signature"))
	eventually(t, applyTimeout, pluginError(f.srv, "other-key", &served, "key mismatch"))
	if served != "" {
		t.Errorf("the module signed with another key is served: sha256 %s", served)
	}
	fingerprint := signedBy(t, f.srv, "signed")

	// The tag is re-pushed with other content: refused as unsigned, and the
	// last good module stays.
	tampered := pushModule(t, "config-echo", "signing/mod:v1")
	eventually(t, applyTimeout, pluginError(f.srv, "signed", &served, "unsigned", tampered[strings.Index(tampered, "@")+1:]))
	if want := moduleSHA256(t, "add-header"); served != want {
		t.Errorf("after the re-push the plugin is served with %q, want the last good %q", served, want)
	}
	holds(t, "after the re-push", func() error {
		if err := expectHeader(f.port, "x-signed", "yes")(); err != nil {
			return err
		}
		return expectHeader(f.port, configEchoHeader, "")()
	})

	// Signing the new content with the key makes it the module in force.
	cosignSign(t, cosign, aliceKey, tampered)
	f.waitFor(t, expectHeader(f.port, configEchoHeader, `{"header":"x-signed","value":"yes"}`))
	if got := signedBy(t, f.srv, "signed"); got != fingerprint {
		t.Errorf("signedBy = %q, want %q", got, fingerprint)
	}
}

// expectStatus returns a poll func that succeeds once a request through
// port is answered with code.
func expectStatus(port, code int) func() error {
	return func() error {
		r, err := get(port, "/")
		if err != nil {
			return err
		}
		if r.status != code {
			return fmt.Errorf("status %d, want %d (body %q)", r.status, code, r.body)
		}
		return nil
	}
}

// signedBy returns, once the plugin is served with a verified module and no
// error, the fingerprint of the key it was verified with.
func signedBy(t *testing.T, s *server, name string) string {
	t.Helper()
	var fp string
	eventually(t, applyTimeout, func() error {
		var st signingStatus
		if err := s.get("/debug/status", &st); err != nil {
			return err
		}
		for _, p := range st.Plugins {
			if p.Name != name {
				continue
			}
			if p.Error != "" || p.SignedBy == "" || p.SignedBy != p.VerificationKey {
				return fmt.Errorf("plugin %s: signedBy %q, key %q, error %q", name, p.SignedBy, p.VerificationKey, p.Error)
			}
			fp = p.SignedBy
			return nil
		}
		return fmt.Errorf("plugin %s not in /debug/status", name)
	})
	return fp
}

// TestPushSignKeyMakesSignaturesCosignAccepts: wasmxds push --sign-key
// with a cosign key pair signs so that cosign verify (no transparency log)
// and wasmxds verify accept the module.
func TestPushSignKeyMakesSignaturesCosignAccepts(t *testing.T) {
	requireFull(t)
	t.Parallel()
	cosign := cosignBin(t)
	key, pub := cosignKeys(t, cosign, t.TempDir(), "release")
	ref := shared.registry.ref("signing/pushed:v1")
	out, err := run(cosignEnv, tools.wasmxds, "push", "--sign-key", key, filterPath("rate-limit"), ref)
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(out)
	if _, err := run(cosignEnv, cosign, "verify", "--key", pub, "--insecure-ignore-tlog=true",
		"--allow-insecure-registry", ref); err != nil {
		t.Errorf("cosign verify refuses what wasmxds push signed: %v", err)
	}
	if out, code := wasmxdsVerify(t, ref, pub); code != 0 || !strings.Contains(out, digest) {
		t.Errorf("wasmxds verify: exit %d, %q", code, out)
	}
}

// TestSigstoreBundleReferrers: a signature cosign stores as a Sigstore
// bundle attached to the manifest as an OCI referrer is verified too (the
// registry has no referrers API: cosign and wasmxds use the tag-schema
// fallback), and one by another key is refused.
func TestSigstoreBundleReferrers(t *testing.T) {
	requireFull(t)
	t.Parallel()
	cosign := cosignBin(t)
	keys := t.TempDir()
	key, pub := cosignKeys(t, cosign, keys, "bundle")
	_, otherPub := cosignKeys(t, cosign, keys, "other")
	ref := pushModule(t, "add-header", "signing/bundle:v1")
	if out, code := wasmxdsVerify(t, ref, pub); code != 1 || !strings.Contains(out, "unsigned") {
		t.Fatalf("before signing: exit %d, %q; want refused as unsigned", code, out)
	}
	if _, err := run(cosignEnv, cosign, "sign", "--new-bundle-format", "--key", key, "--tlog-upload=false",
		"--allow-insecure-registry", "--yes", ref); err != nil {
		t.Fatalf("cosign sign --new-bundle-format: %v", err)
	}
	if out, code := wasmxdsVerify(t, ref, pub); code != 0 || !strings.Contains(out, "verified") {
		t.Errorf("signed as a bundle: exit %d, %q; want verified", code, out)
	}
	if out, code := wasmxdsVerify(t, ref, otherPub); code != 1 || !strings.Contains(out, "key mismatch") {
		t.Errorf("another key: exit %d, %q; want refused for key mismatch", code, out)
	}
}

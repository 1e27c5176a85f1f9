package xds

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/wasmxds/wasmxds/internal/testenv"
	"github.com/wasmxds/wasmxds/internal/testpki"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestEnvoyAcceptsTranslations feeds every golden case's output to
// real Envoy (`envoy --mode validate`), catching what proto validation does
// not: unknown extensions, bad addresses, conflicting filter settings. The
// resources go into static_resources with RDS and ECDS references inlined,
// so Envoy checks the routes and filter configs too.
func TestEnvoyAcceptsTranslations(t *testing.T) {
	envoy := envoyBinary(t)
	cases, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			in, labels := loadGolden(t, path)
			res, _ := Translate(in, labels)
			validateWithEnvoy(t, envoy, staticBootstrap(t, res))
		})
	}
}

// envoyBinary finds Envoy; the test fails without it rather than skipping,
// so a missing Envoy is never mistaken for a pass.
func envoyBinary(t *testing.T) string {
	t.Helper()
	p, err := testenv.Envoy()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func validateWithEnvoy(t *testing.T, envoy string, boot *bootstrapv3.Bootstrap) {
	t.Helper()
	if out, err := runEnvoyValidate(t, envoy, boot); err != nil {
		js, _ := protojson.Marshal(boot)
		t.Fatalf("envoy rejected the translation: %v\n%s\nconfig: %s", err, out, js)
	}
}

func runEnvoyValidate(t *testing.T, envoy string, boot *bootstrapv3.Bootstrap) ([]byte, error) {
	t.Helper()
	js, err := protojson.Marshal(boot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "envoy.json")
	if err := os.WriteFile(cfg, js, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", cfg,
		"--log-level", "warn", "--use-dynamic-base-id").CombinedOutput()
}

// staticBootstrap puts the resources into a bootstrap's static_resources,
// replacing each RDS reference with its route configuration and each ECDS
// reference with its extension config.
func staticBootstrap(t *testing.T, res *Resources) *bootstrapv3.Bootstrap {
	t.Helper()
	routes := map[string]*routev3.RouteConfiguration{}
	for _, r := range res.Routes {
		routes[r.Name] = r
	}
	exts := map[string]*corev3.TypedExtensionConfig{}
	for _, e := range res.Extensions {
		exts[e.Name] = e
	}
	boot := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: "validate", Cluster: "validate"},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: res.Clusters,
			Secrets: append(bootstrapSecrets(t), staticSecrets(t, res.Secrets)...)},
	}
	for _, l := range res.Listeners {
		boot.StaticResources.Listeners = append(boot.StaticResources.Listeners, inlineListener(t, l, routes, exts))
	}
	return boot
}

// bootstrapSecrets are the static secrets `wasmxds bootstrap --tls-*`
// defines, which an https module cluster refers to.
func bootstrapSecrets(t *testing.T) []*tlsv3.Secret {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "validate")
	caFile := ca.Write(t, dir, "ca")
	cert, key := ca.Issue(t, testpki.Names{CN: "envoy"}).Write(t, dir, "envoy")
	file := func(p string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
	}
	return []*tlsv3.Secret{
		{Name: SecretCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: file(caFile)}}},
		{Name: SecretClientCert, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: file(cert), PrivateKey: file(key)}}},
	}
}

func inlineListener(t *testing.T, l *listenerv3.Listener, routes map[string]*routev3.RouteConfiguration,
	exts map[string]*corev3.TypedExtensionConfig) *listenerv3.Listener {
	t.Helper()
	l = proto.Clone(l).(*listenerv3.Listener)
	for _, fc := range l.FilterChains {
		staticSecretRefs(t, fc)
		for _, f := range fc.Filters {
			if f.GetConfigDiscovery() != nil {
				e, ok := exts[f.Name]
				if !ok {
					t.Fatalf("listener %s: no extension config %q", l.Name, f.Name)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: inlinable(t, e.TypedConfig)}
			}
			if f.Name == hcmFilterName {
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: inlineHCM(t, l.Name, f, routes, exts)}
			}
		}
	}
	return l
}

// inlineHCM replaces the HTTP connection manager's RDS and ECDS references
// with what they name.
func inlineHCM(t *testing.T, listener string, f *listenerv3.Filter, routes map[string]*routev3.RouteConfiguration,
	exts map[string]*corev3.TypedExtensionConfig) *anypb.Any {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	rc, ok := routes[hcm.GetRds().GetRouteConfigName()]
	if !ok {
		t.Fatalf("listener %s: no route configuration %q", listener, hcm.GetRds().GetRouteConfigName())
	}
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	for _, hf := range hcm.HttpFilters {
		if hf.GetConfigDiscovery() == nil {
			continue
		}
		e, ok := exts[hf.Name]
		if !ok {
			t.Fatalf("listener %s: no extension config %q", listener, hf.Name)
		}
		hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: inlinable(t, e.TypedConfig)}
	}
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// staticSecretRefs makes a filter chain's SDS references name static
// secrets (staticSecrets defines them).
func staticSecretRefs(t *testing.T, fc *listenerv3.FilterChain) {
	t.Helper()
	ctx := downstreamTLS(fc)
	if ctx == nil {
		return
	}
	for _, s := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
		s.SdsConfig = nil
	}
	a, err := anypb.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fc.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
}

// staticSecrets are the translation's secrets with certificate files that
// exist here, since validate mode loads them.
func staticSecrets(t *testing.T, secrets []*tlsv3.Secret) []*tlsv3.Secret {
	t.Helper()
	if len(secrets) == 0 {
		return nil
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "listeners")
	cert, key := ca.Issue(t, testpki.Names{CN: "listener", DNS: []string{"api.example.com"}}).Write(t, dir, "listener")
	var out []*tlsv3.Secret
	for _, s := range secrets {
		s = proto.Clone(s).(*tlsv3.Secret)
		s.GetTlsCertificate().CertificateChain = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: cert}}
		s.GetTlsCertificate().PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: key}}
		out = append(out, s)
	}
	return out
}

// inlinable clears nack_on_code_cache_miss: Envoy's validate mode fetches
// nothing, so every module misses its cache. The flag only changes when
// Envoy creates the VM, not whether it accepts the config.
func inlinable(t *testing.T, cfg *anypb.Any) *anypb.Any {
	t.Helper()
	pc := wasmPluginConfig(cfg)
	if pc == nil {
		return cfg
	}
	pc.GetVmConfig().NackOnCodeCacheMiss = false
	a, err := repackWasm(cfg, pc)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestEnvoyRejectsWhatTranslationRefuses shows that the checks translation
// makes beyond proto validation guard against configs real Envoy rejects
// (a rejected listener would otherwise NACK its whole update).
func TestEnvoyRejectsWhatTranslationRefuses(t *testing.T) {
	envoy := envoyBinary(t)
	in, labels := loadGolden(t, "testdata/in/plugin-config.yaml")
	type breaker = func(*hcmv3.HttpConnectionManager, *listenerv3.Listener)
	cases := map[string]struct {
		breakIt breaker
		want    string // in Envoy's error
	}{
		"listener address is a DNS name": {want: "malformed IP address", breakIt: func(_ *hcmv3.HttpConnectionManager, l *listenerv3.Listener) {
			l.Address.GetSocketAddress().Address = "localhost"
		}},
		"env var both inline and from host": {want: "Key MODE is duplicated", breakIt: func(hcm *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			f := hcm.HttpFilters[0]
			w := unpackWasm(f.GetTypedConfig())
			env := w.GetConfig().GetVmConfig().GetEnvironmentVariables()
			env.HostEnvKeys = append(env.HostEnvKeys, "MODE")
			a, err := anypb.New(w)
			if err != nil {
				t.Fatal(err)
			}
			f.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
		}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res, problems := Translate(in, labels)
			if len(problems) > 0 {
				t.Fatalf("unexpected problems: %v", problems)
			}
			boot := staticBootstrap(t, res)
			l := boot.StaticResources.Listeners[0]
			hcm, err := listenerHCM(l)
			if err != nil {
				t.Fatal(err)
			}
			c.breakIt(hcm, l)
			a, err := anypb.New(hcm)
			if err != nil {
				t.Fatal(err)
			}
			l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			out, err := runEnvoyValidate(t, envoy, boot)
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("envoy should reject with %q, got %v:\n%s", c.want, err, out)
			}
		})
	}
}

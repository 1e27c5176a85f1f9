package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/bootstrap"
)

func runBootstrap(t *testing.T, args ...string) string {
	t.Helper()
	cmd := newBootstrapCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("bootstrap %v: %v", args, err)
	}
	return out.String()
}

// TestBootstrapPrintsWhatTheLibraryRenders: each flag lands in its option,
// the flag defaults are the library's, and the command prints the
// library's bootstrap byte for byte and writes its SDS files. What Envoy
// makes of the bootstrap is tested in internal/bootstrap.
func TestBootstrapPrintsWhatTheLibraryRenders(t *testing.T) {
	defaults := func(nodeID string) bootstrap.Options {
		return bootstrap.Options{NodeID: nodeID, NodeCluster: bootstrap.DefaultNodeCluster,
			XDSAddress: bootstrap.DefaultXDSAddress, AdminAddress: bootstrap.DefaultAdminAddress,
			AdminPort: bootstrap.DefaultAdminPort, StatsFlushInterval: bootstrap.DefaultStatsFlushInterval}
	}
	sdsDir := "SDSDIR"
	for name, tc := range map[string]struct {
		args   []string
		change func(*bootstrap.Options)
	}{
		"defaults": {[]string{"--node-id", "edge-3"}, func(*bootstrap.Options) {}},
		"ip sotw": {[]string{"--node-id", "edge-3", "--labels", "app=httpbin,version=1", "--xds-address", "127.0.0.1:18000"},
			func(o *bootstrap.Options) { o.Labels = map[string]string{"app": "httpbin", "version": "1"} }},
		"dns delta": {[]string{"--node-id", "edge-3", "--node-cluster", "edge", "--labels", "app=httpbin",
			"--xds-address", "localhost:18000", "--admin-address", "0.0.0.0", "--admin-port", "19901", "--delta"},
			func(o *bootstrap.Options) {
				o.NodeCluster, o.Labels, o.XDSAddress = "edge", map[string]string{"app": "httpbin"}, "localhost:18000"
				o.AdminAddress, o.AdminPort, o.Delta = "0.0.0.0", 19901, true
			}},
		"strings a user types": {[]string{"--node-id", "edge-3", "--labels", "canary=yes,stage=on,build=0123,zone=~", "--admin-port", "0"},
			func(o *bootstrap.Options) {
				o.Labels = map[string]string{"canary": "yes", "stage": "on", "build": "0123", "zone": "~"}
				o.AdminPort = 0
			}},
		"empty cluster and label": {[]string{"--node-id", "edge-3", "--node-cluster", "", "--labels", "a=,b=c"},
			func(o *bootstrap.Options) { o.NodeCluster, o.Labels = "", map[string]string{"a": "", "b": "c"} }},
		"no telemetry": {[]string{"--node-id", "edge-3", "--no-telemetry"}, func(o *bootstrap.Options) { o.NoTelemetry = true }},
		"flush 200ms":  {[]string{"--node-id", "edge-3", "--stats-flush-interval", "200ms"}, func(o *bootstrap.Options) { o.StatsFlushInterval = 200 * time.Millisecond }},
		"server TLS": {[]string{"--node-id", "edge-3", "--xds-address", "cp.example:18000", "--tls-ca-file", "/ca.pem"},
			func(o *bootstrap.Options) { o.XDSAddress, o.TLS.CAFile = "cp.example:18000", "/ca.pem" }},
		"mutual TLS": {[]string{"--node-id", "edge-3", "--tls-ca-file", "/ca.pem", "--tls-cert-file", "/c.pem", "--tls-key-file", "/k.pem"},
			func(o *bootstrap.Options) {
				o.TLS = bootstrap.TLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}
			}},
		"mutual TLS, file SDS": {[]string{"--node-id", "edge-3", "--tls-ca-file", "/ca.pem", "--tls-cert-file", "/c.pem", "--tls-key-file", "/k.pem", "--tls-sds-dir", sdsDir},
			func(o *bootstrap.Options) {
				o.TLS = bootstrap.TLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", SDSDir: sdsDir}
			}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var args []string
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, sdsDir, dir))
			}
			o := defaults("edge-3")
			tc.change(&o)
			if o.TLS.SDSDir == sdsDir {
				o.TLS.SDSDir = dir
			}
			want, err := bootstrap.Render(o)
			if err != nil {
				t.Fatal(err)
			}
			if got := runBootstrap(t, args...); got != string(want.YAML) {
				t.Errorf("bootstrap %v printed\n%s\nthe library renders, for %+v:\n%s", args, got, o, want.YAML)
			}
			written, _ := os.ReadDir(dir)
			if len(written) != len(want.SDSFiles) {
				t.Errorf("wrote %d SDS files, want %d", len(written), len(want.SDSFiles))
			}
			for _, f := range want.SDSFiles {
				if got, err := os.ReadFile(f.Path); err != nil || !bytes.Equal(got, f.Content) {
					t.Errorf("%s = %q (%v), want %q", filepath.Base(f.Path), got, err, f.Content)
				}
			}
		})
	}
}

func TestBootstrapRejectsBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no node id":  {[]string{"--labels", "app=x"}, `required flag(s) "node-id" not set`},
		"empty id":    {[]string{"--node-id", ""}, "--node-id is required"},
		"bad labels":  {[]string{"--node-id", "n", "--labels", "app"}, `invalid argument "app" for "--labels" flag`},
		"bad address": {[]string{"--node-id", "n", "--xds-address", "nohostport"}, `--xds-address "nohostport"`},
		"bad port":    {[]string{"--node-id", "n", "--xds-address", "127.0.0.1:99999"}, `--xds-address "127.0.0.1:99999": want HOST:PORT`},
		"flush -1s":   {[]string{"--node-id", "n", "--stats-flush-interval", "-1s"}, "--stats-flush-interval -1s"},
		"flush 1h":    {[]string{"--node-id", "n", "--stats-flush-interval", "1h"}, "--stats-flush-interval 1h0m0s"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := newBootstrapCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("bootstrap %v: error %v, want one containing %q", tc.args, err, tc.want)
			}
			if strings.Contains(out.String(), "static_resources") {
				t.Errorf("printed a bootstrap anyway:\n%s", out.String())
			}
		})
	}
}

// TestBootstrapTLSFlagCombinations: TLS flags go together sensibly, and a
// refused combination says why and writes nothing.
func TestBootstrapTLSFlagCombinations(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"cert without key":  {[]string{"--tls-ca-file", "/ca.pem", "--tls-cert-file", "/c.pem"}, "--tls-cert-file needs --tls-key-file"},
		"key without cert":  {[]string{"--tls-ca-file", "/ca.pem", "--tls-key-file", "/k.pem"}, "--tls-key-file needs --tls-cert-file"},
		"client without CA": {[]string{"--tls-cert-file", "/c.pem", "--tls-key-file", "/k.pem"}, "needs --tls-ca-file"},
		"SDS without CA":    {[]string{"--tls-sds-dir", "SDSDIR", "--tls-cert-file", "/c.pem", "--tls-key-file", "/k.pem"}, "needs --tls-ca-file"},
		"relative CA":       {[]string{"--tls-ca-file", "ca.pem"}, "want an absolute path"},
	} {
		t.Run(name, func(t *testing.T) {
			sdsDir := t.TempDir()
			args := []string{"--node-id", "n"}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "SDSDIR", sdsDir))
			}
			cmd := newBootstrapCmd()
			cmd.SilenceUsage = true // as under the root command
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SetArgs(args)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed a bootstrap anyway:\n%s", out.String())
			}
			if written, _ := os.ReadDir(sdsDir); len(written) != 0 {
				t.Errorf("wrote %d SDS files anyway", len(written))
			}
		})
	}
}

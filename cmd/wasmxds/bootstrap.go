package main

import (
	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/bootstrap"
)

func newBootstrapCmd() *cobra.Command {
	var o bootstrap.Options
	cmd := &cobra.Command{
		Use:   "bootstrap --node-id ID --labels k=v[,k=v] --xds-address HOST:PORT",
		Short: "Print an Envoy bootstrap that takes all its configuration from wasmxds",
		Long: `Print an Envoy v3 bootstrap (YAML) whose only static cluster is wasmxds's ADS
endpoint (STATIC for an IP address; STRICT_DNS for a host name, re-resolved so a
moved control plane is found), with Envoy's admin listener on
--admin-address:--admin-port. The node's labels (node.metadata.labels) select
which listeners and Wasm plugins it receives; nodes with the same labels share one
configuration. Every string stays a string for Envoy: a node id or label value
such as yes, n, ~ or 0123 is quoted.

With --tls-ca-file Envoy connects over TLS and verifies the server's certificate:
it must chain to that CA and name the --xds-address host as a DNS SAN (or an IP
SAN for an IP address; a DNS host is also sent as SNI). --tls-cert-file and
--tls-key-file add a client certificate for mutual TLS (both, and only with a CA).
File paths are absolute, as Envoy sees them; Envoy reads them once at start. With
--tls-sds-dir the command also writes DIR/wasmxds-xds-ca.yaml and
DIR/wasmxds-xds-client-cert.yaml (file-based SDS; DIR must be the same path for
Envoy), and Envoy reloads the CA, certificate and key when they are moved into
place in their directories (a rename, or a Kubernetes Secret volume update)
without a restart.

Envoy also reports its stats to wasmxds (a metrics_service stat sink over the
same connection and TLS as ADS) every --stats-flush-interval: runtime health
per plugin and rollout analysis come from them. --no-telemetry leaves it out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := bootstrap.Render(o)
			if err != nil {
				return err
			}
			if err := b.WriteSDSFiles(); err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b.YAML)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.NodeID, "node-id", "", "Envoy node id (required, unique per Envoy)")
	f.StringVar(&o.NodeCluster, "node-cluster", bootstrap.DefaultNodeCluster, "Envoy node cluster")
	f.StringToStringVar(&o.Labels, "labels", nil, "node labels, k=v[,k=v]")
	f.StringVar(&o.XDSAddress, "xds-address", bootstrap.DefaultXDSAddress, "wasmxds ADS address, HOST:PORT")
	f.StringVar(&o.AdminAddress, "admin-address", bootstrap.DefaultAdminAddress, "Envoy admin listen address")
	f.Uint32Var(&o.AdminPort, "admin-port", bootstrap.DefaultAdminPort, "Envoy admin listen port")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	f.DurationVar(&o.StatsFlushInterval, "stats-flush-interval", bootstrap.DefaultStatsFlushInterval,
		"how often Envoy reports its stats to wasmxds (runtime health, rollout analysis)")
	f.BoolVar(&o.NoTelemetry, "no-telemetry", false, "leave out the stat sink: Envoy reports nothing to wasmxds")
	f.StringVar(&o.TLS.CAFile, "tls-ca-file", "", "CA bundle (PEM) that the wasmxds server certificate must chain to; enables TLS")
	f.StringVar(&o.TLS.CertFile, "tls-cert-file", "", "client certificate chain (PEM) Envoy presents to wasmxds; needs --tls-key-file and --tls-ca-file")
	f.StringVar(&o.TLS.KeyFile, "tls-key-file", "", "private key (PEM) of --tls-cert-file")
	f.StringVar(&o.TLS.SDSDir, "tls-sds-dir", "", "directory, the same path for Envoy, to write file-based SDS configs into so Envoy reloads rotated TLS files; needs --tls-ca-file")
	_ = cmd.MarkFlagRequired("node-id")
	return cmd
}

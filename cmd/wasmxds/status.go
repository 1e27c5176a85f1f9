package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/controlplane"
	"github.com/wasmxds/wasmxds/internal/statusfmt"
	"github.com/wasmxds/wasmxds/internal/xds"
)

func newStatusCmd() *cobra.Command {
	var server string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show connected Envoys, their ACKed versions and NACKs, plugins and modules",
		Long: `Read a running wasmxds's /debug/status and print it as tables: connected nodes
with the version of each resource type they ACKed and their last NACK, per node
and plugin whether the node runs the module (running, pending while Envoy
fetches it, failed with Envoy's reason), plugins with the module they are
served with (or why it failed), cached modules, and spec errors. --json prints
the raw document.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := fetchStatus(server)
			if err != nil {
				return err
			}
			if asJSON {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			var rep controlplane.StatusReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				return fmt.Errorf("decoding %s/debug/status: %w", server, err)
			}
			return printStatus(cmd.OutOrStdout(), rep, time.Now())
		},
	}
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:18081", "URL of the wasmxds admin listener (serve --admin-listen)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON document")
	return cmd
}

func fetchStatus(server string) ([]byte, error) {
	url := strings.TrimRight(server, "/") + "/debug/status"
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("status: reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// printStatus renders the report as tables, in the order a user debugging a
// fleet reads them: who is connected and on what, then why.
func printStatus(w io.Writer, rep controlplane.StatusReport, now time.Time) error {
	ready := "yes"
	if !rep.Ready {
		ready = "no (no configuration built yet)"
	}
	fmt.Fprintf(w, "Ready: %s   Config: %s   Listeners: %d   Clusters: %d   Plugins: %d\n\n",
		ready, rep.ConfigDir, rep.Listeners, rep.Clusters, len(rep.Plugins))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printReplicas(tw, rep.Replicas, now)
	printNodes(tw, rep.Nodes, now)
	printNodePlugins(tw, rep.Nodes)
	printPlugins(tw, rep.Plugins, now)
	printModules(tw, rep)
	if err := tw.Flush(); err != nil {
		return err
	}
	printList(w, "SPEC ERRORS", rep.SpecErrors)
	printList(w, "SPEC WARNINGS", rep.SpecWarnings)
	var problems []string
	for _, p := range rep.Problems {
		problems = append(problems, fmt.Sprintf("%s: %s %s: %s", p.Source, p.Kind, p.Name, p.Message))
	}
	printList(w, "DROPPED BY TRANSLATION", problems)
	return nil
}

// printReplicas shows the replicas of the fleet when there is more than
// this one.
func printReplicas(tw *tabwriter.Writer, replicas []controlplane.ReplicaReport, now time.Time) {
	if len(replicas) < 2 {
		return
	}
	fmt.Fprintf(tw, "REPLICAS (%d)\n", len(replicas))
	fmt.Fprintln(tw, "ID\tADDRESS\tSTATE\tREADY\tNODES\tLAST SEEN")
	for _, r := range replicas {
		ready, seen := "no", "never"
		if r.Ready {
			ready = "yes"
		}
		if !r.LastSeen.IsZero() {
			seen = statusfmt.Ago(now, r.LastSeen)
		}
		state := r.State
		if r.Error != "" {
			state += ": " + statusfmt.Truncate(statusfmt.OneLine(r.Error), 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", cmp.Or(r.ID, "?"), r.Address, state, ready, r.Nodes, seen)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
}

func printNodes(tw *tabwriter.Writer, nodes []xds.NodeStatus, now time.Time) {
	fmt.Fprintf(tw, "NODES (%d)\n", len(nodes))
	fmt.Fprintln(tw, "ID\tREPLICA\tLABELS\tCONNECTED\tACKED\tLAST NACK")
	for _, n := range nodes {
		nack := "-"
		if n.LastNack != nil {
			nack = fmt.Sprintf("%s %s %s ago: %s", typeAbbrev(n.LastNack.TypeURL), cell(statusfmt.Short(n.LastNack.Version)),
				cell(statusfmt.Age(now, n.LastNack.Time)), statusfmt.Truncate(statusfmt.OneLine(n.LastNack.Error), 80))
		}
		replica := cmp.Or(n.Replica, "-")
		if n.Unreachable {
			replica += " (unreachable)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, replica, labelString(n.Labels), cell(statusfmt.Age(now, n.Connected)),
			ackedString(n.Types), nack)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
}

// printNodePlugins shows, per node and plugin, whether the node runs the
// plugin's module: running, pending (Envoy is fetching it) or failed (with
// Envoy's reason).
func printNodePlugins(tw *tabwriter.Writer, nodes []xds.NodeStatus) {
	var rows []string
	for _, n := range nodes {
		for _, p := range n.Plugins {
			reason := "-"
			if p.Reason != "" {
				reason = statusfmt.Truncate(statusfmt.OneLine(p.Reason), 160)
			}
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, p.Name, p.State, cell(statusfmt.Short(p.SHA256)),
				runtimeString(p.Runtime), reason))
		}
	}
	fmt.Fprintf(tw, "NODE PLUGINS (%d)\n", len(rows))
	fmt.Fprintln(tw, "NODE\tPLUGIN\tSTATE\tMODULE\tLAST MINUTE\tREASON")
	for _, r := range rows {
		fmt.Fprint(tw, r)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
}

// runtimeString is a plugin's runtime on a node, "!" first when it needs
// attention (a VM reload, a high 5xx rate); "-" when the node reports no
// metrics.
func runtimeString(r *xds.PluginRuntime) string {
	if r == nil {
		return "-"
	}
	if why := r.Attention(); why != "" {
		return "! " + why + ": " + r.Summary()
	}
	return r.Summary()
}

func printPlugins(tw *tabwriter.Writer, plugins []controlplane.PluginReport, now time.Time) {
	fmt.Fprintf(tw, "PLUGINS (%d)\n", len(plugins))
	fmt.Fprintln(tw, "NAME\tSTATE\tPHASE/PRIORITY\tURL\tMODULE\tNODES")
	for _, p := range plugins {
		state := p.State
		if p.PendingSince != nil {
			state += " " + cell(statusfmt.Age(now, *p.PendingSince))
		}
		module := cell(statusfmt.Short(p.SHA256))
		switch {
		case p.Error != "" && p.SHA256 != "":
			module += " (last good; " + statusfmt.Truncate(statusfmt.OneLine(p.Error), 80) + ")"
		case p.Error != "":
			module = "ERROR " + statusfmt.Truncate(statusfmt.OneLine(p.Error), 100)
		}
		url := p.URL
		if p.Lua {
			url = "lua (inline code)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%d\t%s\t%s\t%s\n", p.Name, state, p.Phase, p.Priority, url, module,
			moduleNodes(p.Modules, false))
		if ro := p.Rollout; ro != nil {
			rmod := cell(statusfmt.Short(ro.SHA256))
			switch {
			case ro.Halted != nil:
				rmod += " (" + haltedBy(ro.Halted) + ": " + statusfmt.Truncate(statusfmt.OneLine(ro.Halted.Reason), 80) + ")"
			case ro.Error != "":
				rmod += " ERROR " + statusfmt.Truncate(statusfmt.OneLine(ro.Error), 100)
			}
			fmt.Fprintf(tw, "  rollout %d%%\t%s\t\t%s\t%s\t%s\n", ro.Percent, rolloutState(ro), ro.URL, rmod,
				moduleNodes(p.Modules, true))
			if a := ro.Analysis; a != nil && ro.Halted == nil {
				fmt.Fprintf(tw, "    analysis\t%s\t\t%s\t\t\n", a.Verdict, statusfmt.OneLine(a.Reason))
			}
			if ro.Promote != "" {
				fmt.Fprintf(tw, "    promote\t\t\t%s\t\t\n", ro.Promote)
			}
		}
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
}

// haltedBy says what halted a rollout: a chosen node that refused its
// module, or its analysis.
func haltedBy(h *controlplane.HaltReport) string {
	if h.Cause == controlplane.HaltAnalysis {
		return "halted by analysis" + onReplica(h.Replica)
	}
	return "refused by " + h.Node + onReplica(h.Replica)
}

func onReplica(id string) string {
	if id == "" {
		return ""
	}
	return " on " + id
}

// rolloutState is the rollout's state, with its steps and completion.
func rolloutState(ro *controlplane.RolloutReport) string {
	s := ro.State
	if len(ro.Steps) > 0 {
		steps := make([]string, len(ro.Steps))
		for i, v := range ro.Steps {
			steps[i] = fmt.Sprint(v)
		}
		s += " (steps " + strings.Join(steps, ",") + ")"
	}
	if ro.Complete {
		s += ", complete"
	}
	return s
}

// moduleNodes sums up how many nodes were sent a plugin's main (or
// rollout) modules: "3 running, 1 pending".
func moduleNodes(mods []controlplane.ModuleNodes, rollout bool) string {
	var running, pending, failed int
	for _, m := range mods {
		if m.Rollout == rollout {
			running, pending, failed = running+m.Running, pending+m.Pending, failed+m.Failed
		}
	}
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{running, "running"}, {pending, "pending"}, {failed, "failed"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func printModules(tw *tabwriter.Writer, rep controlplane.StatusReport) {
	fmt.Fprintf(tw, "MODULES (%d)\n", len(rep.Modules))
	fmt.Fprintln(tw, "SHA256\tSIZE\tIN USE\tREFS")
	for _, m := range rep.Modules {
		inUse := "no"
		if m.InUse {
			inUse = "yes"
		}
		refs := strings.Join(m.Refs, ", ")
		if refs == "" {
			refs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(statusfmt.Short(m.SHA256)), statusfmt.CompactSize(m.Size), inUse, refs)
	}
}

func printList(w io.Writer, title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s (%d)\n", title, len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// ackedString shows each type's ACKed version, and the version sent when
// the node has not ACKed it (yet).
func ackedString(types map[string]xds.TypeStatus) string {
	if len(types) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(types)) {
		ts := types[t]
		s := typeAbbrev(t) + "=" + statusfmt.Short(ts.Acked)
		if ts.Acked == "" {
			s = typeAbbrev(t) + "=none"
		}
		if ts.Sent != "" && ts.Sent != ts.Acked {
			s += "(sent " + statusfmt.Short(ts.Sent) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func typeAbbrev(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "lds"
	case resource.RouteType:
		return "rds"
	case resource.ClusterType:
		return "cds"
	case resource.ExtensionConfigType:
		return "ecds"
	case resource.EndpointType:
		return "eds"
	}
	return statusfmt.TypeName(typeURL)
}

func labelString(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// cell is a table cell's text: "-" for an absent value.
func cell(s string) string { return cmp.Or(s, "-") }

package controlplane

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/statusfmt"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// statusPageRefresh is how often the status page reloads itself: often
// enough to watch a rollout, rare enough to cost nothing.
const statusPageRefresh = 5 * time.Second

//go:embed statuspage.html
var statusPageHTML string

// statusPageTmpl is parsed once; html/template escapes every value by its
// context, which matters here: node ids, labels, spec errors and NACK
// reasons come from whoever can connect or edit a spec.
var statusPageTmpl = template.Must(template.New("statuspage").Funcs(template.FuncMap{
	"short":    statusfmt.Short,
	"size":     statusfmt.Size,
	"ago":      statusfmt.Ago,
	"typeName": statusfmt.TypeName,
}).Parse(statusPageHTML))

// statusPage is what the status page template renders: the status report
// plus the nodes × plugins grid and each module's users worked out.
type statusPage struct {
	StatusReport
	Now     time.Time
	Refresh int      // seconds
	Columns []string // plugin names, the grid's columns
	Rows    []nodeRow
	Modules []moduleRow
	// Fleet: there are peers, so nodes show their replica.
	Fleet bool
	// Counts for the summary line.
	Running, Pending, Failed, PluginsFailed, ReplicasUnreachable int
	// Attention counts node plugins whose runtime needs a look (a VM
	// reload, a high 5xx rate).
	Attention int
}

// nodeRow is one node and, per column, its plugin's state.
type nodeRow struct {
	xds.NodeStatus
	Cells []xds.PluginStatus // State "" where the node was not sent the plugin
}

// moduleRow is a cached module and the plugins served with it.
type moduleRow struct {
	fetcher.ModuleInfo
	Plugins []string
}

// newStatusPage arranges rep for the page.
func newStatusPage(rep StatusReport, now time.Time) statusPage {
	p := statusPage{StatusReport: rep, Now: now, Refresh: int(statusPageRefresh / time.Second)}
	p.Plugins = slices.Clone(rep.Plugins)
	for i := range p.Plugins {
		p.Plugins[i].URL = redactURL(p.Plugins[i].URL)
		if ro := p.Plugins[i].Rollout; ro != nil {
			c := *ro
			c.URL = redactURL(c.URL)
			p.Plugins[i].Rollout = &c
		}
		if p.Plugins[i].State == PluginFailed {
			p.PluginsFailed++
		}
	}
	p.Fleet = len(rep.Replicas) > 1
	for _, r := range rep.Replicas {
		if r.State == PeerUnreachable {
			p.ReplicasUnreachable++
		}
	}
	p.Columns = pluginColumns(rep)
	for _, n := range rep.Nodes {
		p.Rows = append(p.Rows, p.nodeRow(n))
	}
	for _, m := range rep.Modules {
		p.Modules = append(p.Modules, moduleRow{ModuleInfo: m, Plugins: moduleUsers(rep.Plugins, m.SHA256)})
	}
	return p
}

// nodeRow places n's plugins under their columns and counts their states.
func (p *statusPage) nodeRow(n xds.NodeStatus) nodeRow {
	row := nodeRow{NodeStatus: n, Cells: make([]xds.PluginStatus, len(p.Columns))}
	for _, ps := range n.Plugins {
		if i := slices.Index(p.Columns, ps.Name); i >= 0 {
			row.Cells[i] = ps
		}
		if n.Unreachable {
			continue
		}
		if ps.Runtime != nil && ps.Runtime.Attention() != "" {
			p.Attention++
		}
		switch ps.State {
		case xds.PluginRunning:
			p.Running++
		case xds.PluginPending:
			p.Pending++
		case xds.PluginFailed:
			p.Failed++
		}
	}
	return row
}

// pluginColumns are the plugins the specs declare, then any that nodes
// still report (a plugin just removed from the specs), sorted by name.
func pluginColumns(rep StatusReport) []string {
	var cols []string
	for _, pl := range rep.Plugins {
		cols = append(cols, pl.Name)
	}
	for _, n := range rep.Nodes {
		for _, ps := range n.Plugins {
			cols = append(cols, ps.Name)
		}
	}
	slices.Sort(cols)
	return slices.Compact(cols)
}

// moduleUsers are the plugins served with the module sha.
func moduleUsers(plugins []PluginReport, sha string) []string {
	var out []string
	for _, pl := range plugins {
		if pl.SHA256 == sha {
			out = append(out, pl.Name)
		}
	}
	return out
}

// redactURL hides a password written into a module URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// renderStatusPage writes the page for rep.
func renderStatusPage(rep StatusReport, now time.Time) ([]byte, error) {
	var buf bytes.Buffer
	if err := statusPageTmpl.Execute(&buf, newStatusPage(rep, now)); err != nil {
		return nil, fmt.Errorf("rendering the status page: %w", err)
	}
	return buf.Bytes(), nil
}

// statusPageHandler serves the status page. The page has no script: the
// Content-Security-Policy forbids any, so even a value that escaped
// escaping could not run.
func (cp *ControlPlane) statusPageHandler(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		body, err := renderStatusPage(cp.Status(), time.Now())
		if err != nil {
			log.Error("status page", "error", err)
			http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	}
}

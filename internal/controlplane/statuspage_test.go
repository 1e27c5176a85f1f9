package controlplane

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

const (
	shaAdd  = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111"
	shaRate = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222"
	// Values a client or a spec author controls.
	evilNode   = `<script>alert(1)</script>`
	evilLabel  = `"><img src=x onerror=alert(2)>`
	evilReason = `Failed to load Wasm module due to a missing import: <b onmouseover=alert(3)>env.x</b>`
	evilSpec   = `specs/bad.yaml:7: unknown field "<iframe src=javascript:alert(4)>"`
)

// statusFixture is a report with something in every part of the page.
func statusFixture(now time.Time) StatusReport {
	return StatusReport{
		Ready: false, NotReady: "the first configuration is not applied yet", ConfigDir: "/etc/wasmxds/specs",
		ConfigDirError: "reading /etc/wasmxds/specs: no such file or directory",
		SpecErrors:     []string{evilSpec, "specs/rate.yaml:3: spec.url: unsupported scheme \"ftp\""},
		SpecWarnings:   []string{"specs/web.yaml:12: plugin add-header selects no listener"},
		Listeners:      2, Clusters: 3,
		Plugins: []PluginReport{
			{Name: "add-header", Source: "specs/web.yaml:20", URL: "https://deploy:hunter2-secret@modules.example/add.wasm",
				Phase: "AUTHN", State: PluginReady, SHA256: shaAdd},
			{Name: "rate-limit", Source: "specs/rate.yaml:1", URL: "oci://registry.example/filters/rate:v2",
				Phase: "STATS", State: PluginFailed, SHA256: shaRate, Error: "pulling oci://registry.example/filters/rate:v2: not found",
				Rollout: &RolloutReport{URL: "https://ci:rollout-secret@modules.example/rate-v3.wasm", Percent: 25,
					State: RolloutHalted, SHA256: "dddddddddddd4444", Halted: &HaltReport{Node: evilNode, SHA256: "dddddddddddd4444",
						Reason: evilReason, At: now.Add(-2 * time.Minute)}},
				Modules: []ModuleNodes{{SHA256: shaRate, Running: 3, Pending: 1}, {SHA256: "dddddddddddd4444", Rollout: true, Failed: 1}}},
		},
		Modules: []fetcher.ModuleInfo{
			{SHA256: shaAdd, Size: 2 << 20, Refs: []string{"https://modules.example/add.wasm"}, InUse: true, LastUsed: now},
			{SHA256: shaRate, Size: 1536, Refs: []string{"oci://registry.example/filters/rate:v1"}, LastUsed: now},
		},
		ModuleProblems: []fetcher.Problem{{SHA256: "cccccccccccc3333", Refs: []string{"oci://registry.example/filters/old:v1"},
			Error: "sha256 mismatch", Quarantine: "/var/cache/wasmxds/quarantine/ccc", Time: now.Add(-time.Minute)}},
		CacheDegraded: "writing the cache index: read-only file system",
		Nodes: []xds.NodeStatus{
			{ID: "web-1", Cluster: "web", Labels: map[string]string{"app": "web"}, Connected: now.Add(-90 * time.Second),
				Plugins: []xds.PluginStatus{
					{Name: "add-header", SHA256: shaAdd, State: xds.PluginRunning},
					{Name: "rate-limit", SHA256: shaRate, State: xds.PluginPending},
				}},
			{ID: evilNode, Labels: map[string]string{"app": evilLabel}, Identity: "spiffe://mesh/evil", Connected: now,
				LastNack: &xds.Nack{TypeURL: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
					Error: "Unable to create Wasm plugin add-header", Time: now},
				Plugins: []xds.PluginStatus{{Name: "add-header", SHA256: shaAdd, State: xds.PluginFailed, Reason: evilReason}}},
		},
		Refused:  []xds.NodeDenial{{Identity: "spiffe://mesh/frontend", NodeID: "backend-7", Reason: "label app=backend is not granted", Time: now}},
		Problems: []ProblemReport{{Source: "specs/web.yaml:40", Kind: "Route", Name: "to-nowhere", Message: "cluster nowhere does not exist"}},
	}
}

func renderFixture(t *testing.T, rep StatusReport, now time.Time) (*html.Node, string) {
	t.Helper()
	body, err := renderStatusPage(rep, now)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return doc, string(body)
}

// The grid shows every node's plugins under the plugin's column, in its
// state, with a failure's reason both as text and on hover.
func TestStatusPageGrid(t *testing.T) {
	now := time.Now()
	doc, _ := renderFixture(t, statusFixture(now), now)
	grid := byID(t, doc, "nodes")
	header := texts(all(grid, "th"))
	if want := []string{"node", "labels", "add-header", "rate-limit"}; !slices.Equal(header, want) {
		t.Fatalf("grid columns %q, want %q", header, want)
	}
	rows := all(grid, "tr")[1:]
	if len(rows) != 2 {
		t.Fatalf("%d node rows, want 2", len(rows))
	}
	for i, want := range []struct {
		node  string
		cells []string
	}{
		{"web-1", []string{"running", "pending"}},
		{evilNode, []string{"failed " + evilReason, "–"}},
	} {
		cells := all(rows[i], "td")
		if got := text(cells[0]); !strings.HasPrefix(got, want.node) {
			t.Errorf("row %d starts %q, want node %q", i, got, want.node)
		}
		if got := texts(cells[2:]); !slices.Equal(got, want.cells) {
			t.Errorf("node %s: cells %q, want %q", want.node, got, want.cells)
		}
	}
	failed := all(rows[1], "td")[2]
	if got := attr(failed, "title"); got != evilReason {
		t.Errorf("failed cell's hover text %q, want the reason %q", got, evilReason)
	}
	if got := attr(failed, "class"); !strings.Contains(got, "failed") {
		t.Errorf("failed cell has class %q, want failed (its colour)", got)
	}
	node := text(all(rows[1], "td")[0])
	for _, want := range []string{"identity spiffe://mesh/evil", "last NACK (TypedExtensionConfig): Unable to create Wasm plugin add-header"} {
		if !strings.Contains(node, want) {
			t.Errorf("node cell %q does not show %q", node, want)
		}
	}
	if got := text(all(rows[0], "td")[1]); got != "app=web" {
		t.Errorf("web-1 labels %q, want app=web", got)
	}
}

// Everything an operator must act on is on the page, as text.
func TestStatusPageShowsProblems(t *testing.T) {
	now := time.Now()
	doc, _ := renderFixture(t, statusFixture(now), now)
	for id, wants := range map[string][]string{
		"readiness":        {"not ready: the first configuration is not applied yet"},
		"config-dir-error": {"reading /etc/wasmxds/specs: no such file or directory"},
		"cache-degraded":   {"writing the cache index: read-only file system"},
		"spec-errors":      {evilSpec, `specs/rate.yaml:3: spec.url: unsupported scheme "ftp"`},
		"warnings":         {"specs/web.yaml:12: plugin add-header selects no listener"},
		"dropped":          {"specs/web.yaml:40", "Route", "to-nowhere", "cluster nowhere does not exist"},
		"refused":          {"spiffe://mesh/frontend", "backend-7", "label app=backend is not granted"},
		"plugins": {"rate-limit", "failed", "pulling oci://registry.example/filters/rate:v2: not found", "specs/rate.yaml:1",
			"bbbbbbbbbbbb: 3 running, 1 pending", "rollout 25%", "halted", "refused by " + evilNode + " 2m0s ago: " + evilReason,
			"dddddddddddd: 0 running, 1 failed"},
		"modules":         {"aaaaaaaaaaaa", "2.0 MiB", "yes", "add-header", "https://modules.example/add.wasm", "1.5 KiB", "rate-limit"},
		"module-problems": {"cccccccccccc", "sha256 mismatch", "/var/cache/wasmxds/quarantine/ccc", "oci://registry.example/filters/old:v1"},
	} {
		got := text(byID(t, doc, id))
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("#%s does not show %q; it reads:\n%s", id, w, got)
			}
		}
	}
	if got := text(byID(t, doc, "modules")); strings.Contains(got, shaAdd) {
		t.Errorf("modules show the full sha256 instead of its short form:\n%s", got)
	}
}

// Node ids, labels, reasons and spec errors come from whoever connects or
// edits a spec: they show as text and never become markup.
func TestStatusPageEscapes(t *testing.T) {
	now := time.Now()
	doc, body := renderFixture(t, statusFixture(now), now)
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		if slices.Contains([]string{"script", "img", "iframe", "b"}, n.Data) {
			t.Errorf("the page has a <%s> element: an attacker's value became markup", n.Data)
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s> has an %s attribute", n.Data, a.Key)
			}
		}
	})
	page := text(doc)
	for _, v := range []string{evilNode, "app=" + evilLabel, evilReason, evilSpec} {
		if !strings.Contains(page, v) {
			t.Errorf("the page does not show %q as text", v)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("the raw page contains <script>")
	}
}

// A password in a module URL is not on the page.
func TestStatusPageHidesSecrets(t *testing.T) {
	now := time.Now()
	_, body := renderFixture(t, statusFixture(now), now)
	if strings.Contains(body, "hunter2-secret") || strings.Contains(body, "rollout-secret") {
		t.Error("the page shows the password in a module URL")
	}
	if !strings.Contains(body, "https://ci:xxxxx@modules.example/rate-v3.wasm") {
		t.Error("the page does not show the rollout URL with its password redacted")
	}
	if !strings.Contains(body, "https://deploy:xxxxx@modules.example/add.wasm") {
		t.Error("the page does not show the module URL with its password redacted")
	}
}

// The page is at / and only there, as HTML that reloads itself and may
// run no script; other paths stay 404.
func TestStatusPageOnlyAtRoot(t *testing.T) {
	cp := newTestCP(t, Options{ConfigDir: t.TempDir(), CacheDir: t.TempDir()})
	t.Cleanup(cp.closeListeners)
	h := cp.adminHandler(cp.reg)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q lets scripts run", got)
	}
	doc, err := html.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := text(byID(t, doc, "nodes")); !strings.Contains(got, "No Envoy is connected.") {
		t.Errorf("#nodes reads %q with no node connected", got)
	}
	var refresh string
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "meta" && attr(n, "http-equiv") == "refresh" {
			refresh = attr(n, "content")
		}
	})
	if refresh != "5" {
		t.Errorf("meta refresh %q, want 5 seconds", refresh)
	}
	for _, path := range []string{"/nope", "/index.html", "/debug/"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, rec.Code)
		}
	}
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func byID(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	var found *html.Node
	walk(doc, func(n *html.Node) {
		if found == nil && n.Type == html.ElementNode && attr(n, "id") == id {
			found = n
		}
	})
	if found == nil {
		t.Fatalf("the page has no #%s", id)
	}
	return found
}

func all(root *html.Node, tag string) []*html.Node {
	var out []*html.Node
	walk(root, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
	})
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is n's visible text with runs of white space folded to one space.
func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode && (c.Parent == nil || c.Parent.Data != "style" && c.Parent.Data != "title") {
			b.WriteString(c.Data)
		}
	})
	return strings.Join(strings.Fields(b.String()), " ")
}

func texts(ns []*html.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = text(n)
	}
	return out
}

// With peers, the page lists the replicas and, per node, its replica; the
// nodes of an unreachable replica stay, marked as such.
func TestStatusPageShowsTheFleet(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rep := statusFixture(now)
	rep.Replicas = []ReplicaReport{{ID: "wasmxds-1", Address: "10.0.0.1:18081", State: PeerSelf, Ready: true, LastSeen: now},
		{ID: "wasmxds-2", Address: "10.0.0.2:18081", State: PeerUnreachable, LastSeen: now.Add(-time.Minute)}}
	for i := range rep.Nodes {
		rep.Nodes[i].Replica = "wasmxds-1"
	}
	gone := rep.Nodes[0]
	gone.ID, gone.Replica, gone.Unreachable = "edge-gone", "wasmxds-2", true
	rep.Nodes = append(rep.Nodes, gone)
	doc, _ := renderFixture(t, rep, now)
	replicas := text(byID(t, doc, "replicas"))
	for _, want := range []string{"wasmxds-1", "this replica", "wasmxds-2", "10.0.0.2:18081", "unreachable", "1m0s ago"} {
		if !strings.Contains(replicas, want) {
			t.Errorf("replicas section lacks %q: %s", want, replicas)
		}
	}
	var row string
	walk(byID(t, doc, "nodes"), func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && strings.Contains(text(n), "edge-gone") {
			row = text(n)
		}
	})
	if !strings.Contains(row, "wasmxds-2") || !strings.Contains(row, "unreachable") {
		t.Errorf("the unreachable replica's node row = %q, want its replica, marked unreachable", row)
	}
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// typoSpec has an unknown field on line 6.
const typoSpec = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: typo}
spec:
  url: %s
  pluginConfg: {header: x-typo}
`

// TestStatusPageInChromium loads the admin listener's status page in
// headless Chromium while a real Envoy runs one plugin and fails another,
// and a spec file has an error: the rendered page shows the node, both
// plugins in their states with the failure's reason, and the error's
// file:line. It leaves a screenshot in e2e/results/statuspage.png.
func TestStatusPageInChromium(t *testing.T) {
	requireFull(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed to render the status page: %v (run `make deps`, which installs Debian's chromium)", err)
	}
	bad := filepath.Join(repoRoot(), "e2e/testdata/vm-start-fails.wasm")
	if _, err := shared.registry.pushWasmxds(nil, bad, "filters/statuspage-fails:v1"); err != nil {
		t.Fatal(err)
	}
	const app = "statuspage"
	good := plugin{name: "greeter", app: app, url: oci(refAddHeader), config: addHeader("x-greeter", "hi")}
	// Fail open, so that the listener keeps serving without it. It runs a
	// good module first; the edit to one whose VM refuses to start is a
	// swap, which Envoy confirms at once.
	broken := plugin{name: "crasher", app: app, url: oci(refConfigEcho), failStrategy: "FAIL_OPEN"}
	f := newSingle(t, serverOptions{}, app, map[string]string{
		"greeter.yaml": good.spec(), "crasher.yaml": broken.spec(),
		"typo.yaml": fmt.Sprintf(typoSpec, oci(refAddHeader)),
	})
	f.waitFor(t, expectHeader(f.port, "x-greeter", "hi"))
	node := f.envoy.nodeID
	waitRunning(t, f.srv, node, good.name)
	waitRunning(t, f.srv, node, broken.name)
	broken.url = oci("filters/statuspage-fails:v1")
	f.srv.writeSpec("crasher.yaml", broken.spec())
	eventually(t, applyTimeout, func() error {
		plugins, err := nodePlugins(f.srv, node)
		if err != nil {
			return err
		}
		if p := plugins[broken.name]; p.State != "failed" {
			return fmt.Errorf("plugin %s on %s: %+v, want failed", broken.name, node, p)
		}
		return nil
	})

	doc := chromiumDOM(t, chromium, f.srv.url("/"))
	grid := elementByID(t, doc, "nodes")
	cols := map[string]int{}
	for i, th := range elements(grid, "th") {
		cols[visibleText(th)] = i
	}
	for _, name := range []string{good.name, broken.name} {
		if _, ok := cols[name]; !ok {
			t.Fatalf("the grid has no column for plugin %s: %v", name, cols)
		}
	}
	row := gridRow(t, grid, node)
	cells := elements(row, "td")
	// Once the Envoy has reported its stats, the runtime of the last
	// minute follows the state.
	if got := visibleText(cells[cols[good.name]]); got != "running" && !strings.HasPrefix(got, "running last minute: ") {
		t.Errorf("%s × %s reads %q, want running (and, once reported, its last minute)", node, good.name, got)
	}
	failed := cells[cols[broken.name]]
	if got := visibleText(failed); !strings.HasPrefix(got, "failed ") || !strings.Contains(got, "VM") {
		t.Errorf("%s × %s reads %q, want failed with Envoy's reason (a VM that failed)", node, broken.name, got)
	}
	if got := attribute(failed, "title"); !strings.Contains(got, "VM") {
		t.Errorf("%s × %s hover text %q, want the reason", node, broken.name, got)
	}
	if got := visibleText(elementByID(t, doc, "spec-errors")); !strings.Contains(got, `typo.yaml:6: unknown field "pluginConfg"`) {
		t.Errorf("the spec errors read %q, want typo.yaml:6 and its unknown field", got)
	}
	chromiumScreenshot(t, chromium, f.srv.url("/"), filepath.Join(repoRoot(), "e2e/results/statuspage.png"))
}

// chromiumDOM is the page at url as headless Chromium rendered it.
func chromiumDOM(t *testing.T, chromium, url string) *html.Node {
	t.Helper()
	out := runChromium(t, chromium, "--dump-dom", url)
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatalf("parsing Chromium's DOM: %v", err)
	}
	return doc
}

// chromiumScreenshot saves a PNG of the page at url, for a person to look at.
func chromiumScreenshot(t *testing.T, chromium, url, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	runChromium(t, chromium, "--screenshot="+path, "--window-size=1400,1000", "--hide-scrollbars", url)
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("Chromium wrote no screenshot at %s: %v", path, err)
	}
	t.Logf("screenshot: %s", path)
}

// runChromium runs headless Chromium with a profile of its own (so runs do
// not share state) and returns its standard output.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// gridRow is the grid's row for node.
func gridRow(t *testing.T, grid *html.Node, node string) *html.Node {
	t.Helper()
	for _, tr := range elements(grid, "tr") {
		if tds := elements(tr, "td"); len(tds) > 0 && strings.HasPrefix(visibleText(tds[0]), node+" ") {
			return tr
		}
	}
	t.Fatalf("the grid has no row for node %s: %q", node, visibleText(grid))
	return nil
}

func visit(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		visit(c, fn)
	}
}

func elementByID(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	var found *html.Node
	visit(doc, func(n *html.Node) {
		if found == nil && n.Type == html.ElementNode && attribute(n, "id") == id {
			found = n
		}
	})
	if found == nil {
		t.Fatalf("the page has no #%s: %q", id, visibleText(doc))
	}
	return found
}

func elements(root *html.Node, tag string) []*html.Node {
	var out []*html.Node
	visit(root, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
	})
	return out
}

func attribute(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// visibleText is n's text outside style and title, white space folded.
func visibleText(n *html.Node) string {
	var b strings.Builder
	visit(n, func(c *html.Node) {
		if c.Type == html.TextNode && (c.Parent == nil || c.Parent.Data != "style" && c.Parent.Data != "title") {
			b.WriteString(c.Data)
		}
	})
	return strings.Join(strings.Fields(b.String()), " ")
}

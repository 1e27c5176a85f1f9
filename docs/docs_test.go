// Package docs_test checks the documentation against the tree: every
// relative link in the README and docs/ leads to a file (and heading) that
// exists, and the README's Development section names every directory.
package docs_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository root; this package lives in <root>/docs.
const root = ".."

// markdownFiles are the documents whose links are checked.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md"), filepath.Join(root, "BENCHMARKS.md"),
		filepath.Join(root, "examples", "filters", "README.md")}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, filepath.Join(root, "docs", path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// prose returns the lines of a markdown file outside fenced code blocks,
// with their line numbers.
func prose(t *testing.T, path string) map[int]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := map[int]string{}
	fenced := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			lines[n] = line
		}
	}
	return lines
}

// anchors are the GitHub anchors of a markdown file's headings.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, line := range prose(t, path) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		out[slug(title)] = true
	}
	return out
}

// slug is GitHub's anchor for a heading: lower case, punctuation dropped,
// spaces as hyphens.
func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func TestLinksResolve(t *testing.T) {
	checked := 0
	for _, file := range markdownFiles(t) {
		for n, line := range prose(t, file) {
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				path, anchor, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link to %s: %v", file, n, target, err)
						continue
					}
				}
				if anchor != "" && strings.HasSuffix(dest, ".md") && !anchors(t, dest)[anchor] {
					t.Errorf("%s:%d: link to %s: %s has no heading #%s", file, n, target, dest, anchor)
				}
			}
		}
	}
	if checked < 30 {
		t.Errorf("only %d relative links found; is the link pattern still right?", checked)
	}
}

func TestSlug(t *testing.T) {
	for title, want := range map[string]string{
		"Module swaps without a listener change (ECDS)":         "module-swaps-without-a-listener-change-ecds",
		"Signed modules (`verificationKey`)":                    "signed-modules-verificationkey",
		"FilterDeployment, ASMFilterDeployment and EnvoyFilter": "filterdeployment-asmfilterdeployment-and-envoyfilter",
		"HTTP endpoints of `wasmxds serve`":                     "http-endpoints-of-wasmxds-serve",
	} {
		if got := slug(title); got != want {
			t.Errorf("slug(%q) = %q, want %q", title, got, want)
		}
	}
}

// TestDevelopmentNamesTheTree checks that the README's Development section
// names every top-level directory, every internal package and every
// command, so that it keeps matching the tree.
func TestDevelopmentNamesTheTree(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, dev, ok := strings.Cut(string(b), "\n## Development\n")
	if !ok {
		t.Fatal("README.md has no Development section")
	}
	if i := strings.Index(dev, "\n## "); i >= 0 {
		dev = dev[:i]
	}
	ignored := gitignoredDirs(t)
	var want []string
	for _, dir := range []string{".", "internal", "cmd"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || strings.HasPrefix(name, ".") || (dir == "." && ignored[name]) {
				continue
			}
			if dir != "." {
				name = dir + "/" + name
			}
			want = append(want, name)
		}
	}
	if len(want) < 15 {
		t.Fatalf("only %d directories found: %v", len(want), want)
	}
	for _, name := range want {
		if !strings.Contains(dev, "`"+name+"`") && !strings.Contains(dev, "`"+name+"/") {
			t.Errorf("README.md's Development section does not name %s", name)
		}
	}
}

// gitignoredDirs are the top-level directories .gitignore leaves out
// (lines such as /bin/): build output, not part of the tree.
func gitignoredDirs(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "/") && strings.HasSuffix(line, "/") && strings.Count(line, "/") == 2 {
			out[strings.Trim(line, "/")] = true
		}
	}
	return out
}

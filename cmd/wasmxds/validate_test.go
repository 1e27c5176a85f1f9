package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// validate runs `wasmxds validate dir` as main would and returns its stdout
// and exit code.
func validate(t *testing.T, dir string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"validate", dir})
	err := root.Execute()
	var exit exitError
	switch {
	case err == nil:
		return out.String(), 0
	case asExit(err, &exit):
		return out.String(), exit.code
	default:
		t.Fatalf("validate %s: %v", dir, err)
		return "", 0
	}
}

// copyCase copies one testdata case (a file or a directory) into a fresh
// directory so that it is validated alone.
func copyCase(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	base := filepath.Dir(src)
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestValidateEachInvalidCaseExitsOneWithFileLineErrors(t *testing.T) {
	root := filepath.Join("..", "..", "internal", "catalog", "testdata", "invalid")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			dir := copyCase(t, filepath.Join(root, e.Name()))
			out, code := validate(t, dir)
			if code != 1 {
				t.Fatalf("exit code %d, want 1; output:\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			errLine := regexp.MustCompile(`^` + regexp.QuoteMeta(filepath.Join(dir, e.Name())) + `(/[^:]+)?:[0-9]+: \S`)
			for _, l := range lines[:len(lines)-1] {
				if !errLine.MatchString(l) {
					t.Errorf("line %q is not DIR/file:line: message", l)
				}
			}
			if summary := lines[len(lines)-1]; !strings.HasPrefix(summary, dir+": ") || strings.Contains(summary, " 0 errors") {
				t.Errorf("summary %q does not count the errors", summary)
			}
		})
	}
}

func TestValidateValidDirectoryExitsZeroWithSummary(t *testing.T) {
	dir := filepath.Join("..", "..", "internal", "catalog", "testdata", "valid")
	out, code := validate(t, dir)
	if code != 0 {
		t.Fatalf("exit code %d, want 0; output:\n%s", code, out)
	}
	summary := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(dir) +
		`: [0-9]+ listeners, [0-9]+ clusters, [0-9]+ plugins, 0 errors, [0-9]+ warnings?$`)
	if !summary.MatchString(out) {
		t.Errorf("no summary line in:\n%s", out)
	}
	if !strings.Contains(out, filepath.Join(dir, "warning-port.yml")+":11: warning: ") {
		t.Errorf("warning not printed with its file:line:\n%s", out)
	}
}

func TestValidateMissingDirectoryFails(t *testing.T) {
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"validate", filepath.Join(t.TempDir(), "missing")})
	if err := root.Execute(); err == nil {
		t.Error("validate of a missing directory succeeded")
	}
}

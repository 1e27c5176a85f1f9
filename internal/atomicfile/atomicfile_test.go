package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// names lists dir's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFileReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	long := bytes.Repeat([]byte("old content "), 1000)
	if err := WriteFile(path, long, 0o644); err != nil {
		t.Fatal(err)
	}
	short := []byte(`{"new":true}`)
	if err := WriteFile(path, short, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, short) {
		t.Errorf("content = %q, want %q", got, short)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %v, want %v", mode, os.FileMode(0o600))
	}
	if got := names(t, dir); !slices.Equal(got, []string{"state.json"}) {
		t.Errorf("directory holds %q, want only state.json", got)
	}
}

// TestWriteFileFailureLeavesNothing fails the rename (the destination is a
// directory that is not empty) after the temp file was written.
func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []byte("x"), 0o644)
	if err == nil {
		t.Fatal("WriteFile over a directory succeeded")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"state.json"}) {
		t.Errorf("directory holds %q, want only state.json", got)
	}
}

func TestWriteFileUnwritableDirectory(t *testing.T) {
	t.Run("read-only", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
		if f, err := os.CreateTemp(dir, "probe-*"); err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			t.Skip("permissions are not enforced for this user")
		}
		path := filepath.Join(dir, "state.json")
		err := WriteFile(path, []byte("x"), 0o644)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("error = %v, want one naming %s", err, path)
		}
		if got := names(t, dir); len(got) != 0 {
			t.Errorf("directory holds %q, want nothing", got)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(file, "state.json")
		err := WriteFile(path, []byte("x"), 0o644)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("error = %v, want one naming %s", err, path)
		}
	})
}

func TestWriteTempThenRename(t *testing.T) {
	tmpDir, dir := t.TempDir(), t.TempDir()
	tmp, err := WriteTemp(tmpDir, "part-*", []byte("module"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "m.wasm")
	if err := Rename(tmp, dest); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || string(got) != "module" {
		t.Errorf("ReadFile = %q, %v; want %q", got, err, "module")
	}
	if got := names(t, tmpDir); len(got) != 0 {
		t.Errorf("temp directory holds %q, want nothing", got)
	}
	if _, err := WriteTemp(filepath.Join(tmpDir, "missing"), "part-*", []byte("x"), 0o644); err == nil {
		t.Error("WriteTemp into a missing directory succeeded")
	}
}

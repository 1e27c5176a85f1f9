package regularfile

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(regular, []byte("module"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "named pipe", link: "named pipe", dir: "directory", "/dev/null": "character device"} {
		// A FIFO with no writer would block an ordinary open forever.
		f, err := Open(path)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %v, want ErrNotRegular naming the path and %q", path, err, want)
		}
		if f != nil {
			f.Close()
		}
	}
	if _, err := OpenInRoot(dir, "pipe"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("OpenInRoot(pipe) = %v, want ErrNotRegular", err)
	}
	f, err := OpenInRoot(dir, "m.wasm")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(b) != "module" {
		t.Errorf("regular file read %q, %v", b, err)
	}
}

func TestContextReaderStopsWhenDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ContextReader(ctx, strings.NewReader("abc"))
	buf := make([]byte, 1)
	if n, err := r.Read(buf); n != 1 || err != nil {
		t.Fatalf("read before cancel = %d, %v", n, err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel = %v, want context.Canceled", err)
	}
}

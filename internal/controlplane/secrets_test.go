package controlplane

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

func writeSecret(t *testing.T, path, value string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func configOf(name string, want string) func(xds.Input) bool {
	return func(in xds.Input) bool { return in.Modules[name].Config == want }
}

// A secret file fills the config pushed; its rotation pushes the new value;
// a missing file is a spec error at the entry's line and the last good
// config stays; nothing but the pushed config holds the value.
func TestSecretRefsFillRotateAndKeepTheLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	writeSecret(t, token, "s3cr3t-one\n")
	mods := &fakeModules{sums: map[string]string{"oci://r/f:v1": "aa"}}
	c, sink := newTestController(t, mods, controllerOptions{})
	p := plugin("f", "oci://r/f:v1", catalog.PullIfNotPresent)
	p.Source = catalog.Source{File: "plugins.yaml", Line: 3}
	p.Config = `{"header":"x-api-key","n":1.50}`
	p.SecretRefs = []catalog.SecretRef{{Path: []string{"value"}, File: token, Line: 9},
		{Path: []string{"auth", "token"}, File: token, Line: 10}}
	st := plugins(p)
	c.onChange(st)

	sink.until(t, "the filled config", configOf("f",
		`{"auth":{"token":"s3cr3t-one"},"header":"x-api-key","n":1.50,"value":"s3cr3t-one"}`))
	if strings.Contains(st.Plugins[0].Config, "s3cr3t") {
		t.Fatal("the catalog state holds the secret")
	}

	writeSecret(t, token, "s3cr3t-two")
	sink.until(t, "the rotated config", configOf("f",
		`{"auth":{"token":"s3cr3t-two"},"header":"x-api-key","n":1.50,"value":"s3cr3t-two"}`))

	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	sink.until(t, "a push after the removal", func(xds.Input) bool { return len(c.secrets.specErrors()) == 2 })
	errs := c.secrets.specErrors()
	if got := errs[0].Error(); !strings.HasPrefix(got, "plugins.yaml:9: spec.secretRefs[0].file: cannot read "+token) ||
		!strings.Contains(got, "no such file") {
		t.Errorf("spec error = %q", got)
	}
	c.trigger()
	in := sink.until(t, "a push", func(xds.Input) bool { return true })
	if pm := in.Modules["f"]; !strings.Contains(pm.Config, "s3cr3t-two") || pm.Module == nil {
		t.Errorf("after the removal f = %+v, want the last good config and its module", pm)
	}

	writeSecret(t, token, "s3cr3t-three")
	sink.until(t, "the restored file", configOf("f",
		`{"auth":{"token":"s3cr3t-three"},"header":"x-api-key","n":1.50,"value":"s3cr3t-three"}`))
	if errs := c.secrets.specErrors(); len(errs) != 0 {
		t.Errorf("spec errors after the file came back: %v", errs)
	}
	for _, r := range c.pluginReports() {
		if strings.Contains(r.Error, "s3cr3t") {
			t.Errorf("plugin report holds the secret: %+v", r)
		}
	}
}

// A plugin whose secret was never readable is not pushed with a partial
// config: it is unavailable, so its fail strategy applies.
func TestPluginWithoutItsSecretIsUnavailable(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/f:v1": "aa"}}
	c, sink := newTestController(t, mods, controllerOptions{})
	p := plugin("f", "oci://r/f:v1", catalog.PullIfNotPresent)
	p.SecretRefs = []catalog.SecretRef{{Path: []string{"token"}, File: filepath.Join(t.TempDir(), "missing"), Line: 7}}
	c.onChange(plugins(p))
	in := sink.until(t, "f failed", func(in xds.Input) bool { return in.Modules["f"].Err != "" })
	if pm := in.Modules["f"]; pm.Module != nil || pm.Pending || pm.Config != "" {
		t.Errorf("f = %+v, want unavailable", pm)
	}
}

// A secret read before the store watched its directory (the first push
// can come before the watcher starts) and rotated in between is read
// again once the watch is in place: the rotation is not lost until a
// resync.
func TestSecretRotatedBeforeItsWatchIsReadAgain(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	writeSecret(t, token, "one")
	s := newSecretStore(slog.New(slog.DiscardHandler), nil)
	p := plugin("f", "oci://r/f:v1", catalog.PullIfNotPresent)
	p.Config = `{}`
	p.SecretRefs = []catalog.SecretRef{{Path: []string{"token"}, File: token, Line: 3}}
	if cfg, ok := s.config(p); !ok || cfg != `{"token":"one"}` {
		t.Fatalf("config = %q, %v", cfg, ok)
	}
	writeSecret(t, token, "two") // no watcher yet: no event

	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not ask for its secrets to be read again once it watched them")
	}
}

// Events lost to an overflowed watcher queue may hide a rotation: the
// store reads its files again instead of waiting for a resync.
func TestSecretWatcherErrorReadsTheFilesAgain(t *testing.T) {
	s := newSecretStore(slog.New(slog.DiscardHandler), nil)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.loop(ctx, w, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done; _ = w.Close() })
	w.Errors <- fsnotify.ErrEventOverflow
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("a watcher error did not ask for the secrets to be read again")
	}
}

// Text an Envoy sends back (a NACK quoting the config it rejected) loses
// every secret value read, current and rotated out, however it is quoted.
func TestRedactRemovesSecretValues(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	writeSecret(t, token, `old"pass\word`)
	s := newSecretStore(nil, nil)
	p := plugin("f", "oci://r/f:v1", catalog.PullIfNotPresent)
	p.SecretRefs = []catalog.SecretRef{{Path: []string{"token"}, File: token, Line: 3}}
	if _, ok := s.config(p); !ok {
		t.Fatal("secret not read")
	}
	writeSecret(t, token, "n3w-s3cret")
	if _, ok := s.config(p); !ok {
		t.Fatal("rotated secret not read")
	}
	nack := `Proto constraint validation failed: config { value: "{\"token\":\"old\\\"pass\\\\word\"}" } ` +
		`raw=old"pass\word now={"token":"n3w-s3cret"}`
	got := s.redact(nack)
	for _, leak := range []string{"old", "pass", "n3w-s3cret"} {
		if strings.Contains(got, leak) {
			t.Errorf("redacted text still holds %q: %s", leak, got)
		}
	}
	if !strings.Contains(got, "Proto constraint validation failed") || !strings.Contains(got, "[secret]") {
		t.Errorf("redacted text lost its message: %s", got)
	}
}

// With secret roots, a secretRefs file that resolves outside every root (a
// symlink to /etc/shadow, say) is never read: it is a spec error at the
// entry's line naming where it leads, and the plugin is not pushed with it.
// A named pipe is refused, not waited on.
func TestSecretRootsConfineSecretFiles(t *testing.T) {
	roots, outside := t.TempDir(), t.TempDir()
	inside := filepath.Join(roots, "token")
	writeSecret(t, inside, "in-root")
	stolen := filepath.Join(outside, "shadow")
	writeSecret(t, stolen, "root:$6$hash")
	escape := filepath.Join(roots, "escape")
	if err := os.Symlink(stolen, escape); err != nil {
		t.Fatal(err)
	}
	pipe := filepath.Join(roots, "pipe")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	mods := &fakeModules{sums: map[string]string{"oci://r/f:v1": "aa", "oci://r/g:v1": "bb", "oci://r/h:v1": "cc"}}
	c, sink := newTestController(t, mods, controllerOptions{SecretRoots: []string{roots}})
	ok := plugin("f", "oci://r/f:v1", catalog.PullIfNotPresent)
	ok.SecretRefs = []catalog.SecretRef{{Path: []string{"token"}, File: inside, Line: 4}}
	bad := plugin("g", "oci://r/g:v1", catalog.PullIfNotPresent)
	bad.Source = catalog.Source{File: "plugins.yaml", Line: 20}
	bad.SecretRefs = []catalog.SecretRef{{Path: []string{"token"}, File: escape, Line: 24}}
	fifo := plugin("h", "oci://r/h:v1", catalog.PullIfNotPresent)
	fifo.Source = catalog.Source{File: "plugins.yaml", Line: 28}
	fifo.SecretRefs = []catalog.SecretRef{{Path: []string{"token"}, File: pipe, Line: 30}}
	c.onChange(plugins(ok, bad, fifo))

	in := sink.until(t, "f filled, g and h refused", func(in xds.Input) bool {
		return in.Modules["f"].Config == `{"token":"in-root"}` && in.Modules["g"].Err != "" && in.Modules["h"].Err != ""
	})
	for _, name := range []string{"g", "h"} {
		if strings.Contains(in.Modules[name].Config, "root:") || in.Modules[name].Module != nil {
			t.Errorf("%s = %+v, want unavailable without the file's content", name, in.Modules[name])
		}
	}
	var got []string
	for _, e := range c.secrets.specErrors() {
		got = append(got, e.Error())
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "plugins.yaml:24: spec.secretRefs[0].file: "+escape) ||
		!strings.Contains(got[0], stolen) || !strings.Contains(got[0], roots) || !strings.Contains(got[1], "named pipe") {
		t.Errorf("spec errors = %q, want g's at line 24 naming the file, where it leads and the root; h's saying named pipe", got)
	}
	for _, e := range got {
		if strings.Contains(e, "$6$") {
			t.Errorf("a spec error holds the outside file's content: %q", e)
		}
	}
}

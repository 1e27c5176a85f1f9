package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/regularfile"
)

// maxSecretSize bounds one secret file.
const maxSecretSize = 64 << 10

// secretStore fills plugins' secretRefs from files into their configs. It
// is the only place secret values live, apart from the xDS resources built
// for the Envoys a plugin selects: errors name files and lines, never
// values. It watches the files' directories, so that a rotation (an edit,
// or Kubernetes swapping its ..data link) pushes the new config.
type secretStore struct {
	log     *slog.Logger
	roots   []string          // --allow-secret-root: where secret files may be; none: anywhere
	watcher *fsnotify.Watcher // set while run runs

	mu       sync.Mutex
	dirs     map[string]bool                // directories watched
	files    map[string]bool                // secret files referenced
	lastGood map[string]string              // plugin → the last config filled in full
	problems map[string][]catalog.SpecError // plugin → files that could not be read
	values   map[string]map[string]bool     // plugin → secret values read lately, for redact
}

func newSecretStore(log *slog.Logger, roots []string) *secretStore {
	return &secretStore{log: log, roots: roots, dirs: map[string]bool{}, files: map[string]bool{},
		lastGood: map[string]string{}, problems: map[string][]catalog.SpecError{}, values: map[string]map[string]bool{}}
}

// run watches the secret files' directories and calls changed whenever a
// secret may have changed, until ctx ends. Without it, files are read on
// every push but rotations wait for the next one.
func (s *secretStore) run(ctx context.Context, changed func()) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("secret files are not watched; rotations apply on the next resync", "error", err)
		return
	}
	defer w.Close()
	s.mu.Lock()
	s.watcher = w
	refs := make([]catalog.SecretRef, 0, len(s.files))
	for f := range s.files {
		refs = append(refs, catalog.SecretRef{File: f})
	}
	s.watchLocked(refs)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watcher, s.dirs = nil, map[string]bool{}
		s.mu.Unlock()
	}()
	if len(refs) > 0 {
		// These files were read before their directories were watched:
		// a rotation in between made no event, so read them again now.
		changed()
	}
	s.loop(ctx, w, changed)
}

func (s *secretStore) loop(ctx context.Context, w *fsnotify.Watcher, changed func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if s.concerns(ev.Name) {
				changed()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An error (an overflowed event queue, say) may have lost
			// events: read the files again rather than wait for a resync.
			s.log.Warn("watching secret files; reading them again", "error", err)
			changed()
		}
	}
}

// concerns reports whether an event on path may change a secret: the file
// itself, or Kubernetes' atomic-writer links (..data, ..2024_...).
func (s *secretStore) concerns(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[path] || strings.HasPrefix(filepath.Base(path), "..")
}

// config returns p's configuration with its secrets filled in. When a file
// cannot be read it returns the last config filled in full, if any
// (ok false when there is none), and reports the file as a spec error.
func (s *secretStore) config(p catalog.Plugin) (cfg string, ok bool) {
	// Watch before reading: once run watches, a rotation after the read
	// makes an event and one before it is what the read sees; a file read
	// before run started is read again when it does.
	s.mu.Lock()
	s.watchLocked(p.SecretRefs)
	s.mu.Unlock()
	cfg, values, problems := fillSecrets(p, s.roots)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rememberLocked(p.Name, values)
	if len(problems) == 0 {
		s.lastGood[p.Name] = cfg
		delete(s.problems, p.Name)
		return cfg, true
	}
	if !slices.Equal(s.problems[p.Name], problems) {
		for _, e := range problems {
			s.log.Warn("secret not read; the plugin keeps its last good config", "plugin", p.Name, "error", e.Error())
		}
	}
	s.problems[p.Name] = problems
	cfg, ok = s.lastGood[p.Name]
	return cfg, ok
}

// watchLocked watches the directories of refs' files. A directory that does
// not exist yet is tried again on the next push.
func (s *secretStore) watchLocked(refs []catalog.SecretRef) {
	for _, r := range refs {
		if !regularfile.Inside(r.File, s.roots) {
			continue // never read, so never watched: a spec cannot make the server watch any directory
		}
		s.files[r.File] = true
		dir := filepath.Dir(r.File)
		if s.watcher == nil || s.dirs[dir] {
			continue
		}
		if err := s.watcher.Add(dir); err == nil {
			s.dirs[dir] = true
		}
	}
}

// retain forgets the plugins not in names.
func (s *secretStore) retain(names map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.lastGood {
		if !names[name] {
			delete(s.lastGood, name)
		}
	}
	for name := range s.problems {
		if !names[name] {
			delete(s.problems, name)
		}
	}
	for name := range s.values {
		if !names[name] {
			delete(s.values, name)
		}
	}
}

// specErrors lists the secret files that could not be read.
func (s *secretStore) specErrors() []catalog.SpecError {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []catalog.SpecError
	for _, es := range s.problems {
		out = append(out, es...)
	}
	slices.SortFunc(out, func(a, b catalog.SpecError) int {
		return strings.Compare(fmt.Sprintf("%s:%09d", a.File, a.Line), fmt.Sprintf("%s:%09d", b.File, b.Line))
	})
	return out
}

// valuesKept bounds the secret values remembered per plugin for redact:
// the current ones and a few rotated out, which Envoys may still quote.
const valuesKept = 16

// rememberLocked keeps a plugin's secret values for redact.
func (s *secretStore) rememberLocked(plugin string, values []string) {
	kept := s.values[plugin]
	if kept == nil {
		kept = map[string]bool{}
		s.values[plugin] = kept
	}
	for _, v := range values {
		if len(kept) >= valuesKept && !kept[v] {
			for old := range kept {
				delete(kept, old)
				break
			}
		}
		kept[v] = true
	}
}

// redact replaces every secret value known, as written and as JSON or Go
// would quote it, with [secret]: for text that came back from an Envoy (a
// NACK may quote the config it rejected).
func (s *secretStore) redact(text string) string {
	s.mu.Lock()
	var forms []string
	for _, vs := range s.values {
		for v := range vs {
			if v == "" {
				continue
			}
			// As written, quoted once (JSON or Go/C style), and quoted
			// twice: a JSON config inside a string of Envoy's message.
			once := []string{v, quoteJSON(v), quoteGo(v)}
			forms = append(forms, once...)
			for _, o := range once[1:] {
				forms = append(forms, quoteJSON(o), quoteGo(o))
			}
		}
	}
	s.mu.Unlock()
	// Longest first, so that a value containing another is replaced whole.
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		text = strings.ReplaceAll(text, f, "[secret]")
	}
	return text
}

func quoteJSON(v string) string {
	j, _ := json.Marshal(v)
	return strings.TrimSuffix(strings.TrimPrefix(string(j), `"`), `"`)
}

func quoteGo(v string) string {
	q := strconv.Quote(v)
	return q[1 : len(q)-1]
}

// fillSecrets sets each secretRef's value in p's config; it also returns
// the values read.
func fillSecrets(p catalog.Plugin, roots []string) (string, []string, []catalog.SpecError) {
	doc := map[string]any{}
	if p.Config != "" {
		d := json.NewDecoder(strings.NewReader(p.Config))
		d.UseNumber() // numbers pass through as written
		if err := d.Decode(&doc); err != nil {
			return "", nil, []catalog.SpecError{{File: p.Source.File, Line: p.Source.Line, Message: "spec.pluginConfig: " + err.Error()}}
		}
	}
	var problems []catalog.SpecError
	var values []string
	for i, r := range p.SecretRefs {
		v, err := readSecret(r.File, roots)
		if errors.Is(err, regularfile.ErrOutsideRoots) {
			problems = append(problems, catalog.SpecError{File: p.Source.File, Line: r.Line,
				Message: fmt.Sprintf("spec.secretRefs[%d].file: %v (--allow-secret-root)", i, err)})
			continue
		}
		if err != nil {
			problems = append(problems, catalog.SpecError{File: p.Source.File, Line: r.Line,
				Message: fmt.Sprintf("spec.secretRefs[%d].file: cannot read %s: %v", i, r.File, err)})
			continue
		}
		setPath(doc, r.Path, v)
		values = append(values, v)
	}
	if len(problems) > 0 {
		return "", values, problems
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as the catalog encodes pluginConfig
	if err := enc.Encode(doc); err != nil {
		return "", values, []catalog.SpecError{{File: p.Source.File, Line: p.Source.Line, Message: "spec.pluginConfig: " + err.Error()}}
	}
	return strings.TrimSuffix(buf.String(), "\n"), values, nil
}

// readSecret reads a secret file, without one trailing newline, if it is
// inside roots (symlinks resolved; none: anywhere). Errors carry the reason
// only, the caller names the file, except for a file outside the roots,
// whose error names where it resolves to and the roots.
func readSecret(path string, roots []string) (string, error) {
	f, err := regularfile.OpenConfined(path, roots)
	if errors.Is(err, regularfile.ErrOutsideRoots) {
		return "", err
	}
	if err != nil {
		return "", reason(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", reason(err)
	}
	if len(b) > maxSecretSize {
		return "", fmt.Errorf("larger than %d bytes", maxSecretSize)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// reason strips the path from a file error.
func reason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// setPath sets doc[path...] = v, creating objects on the way (the catalog
// checked that no value on the way is anything else).
func setPath(doc map[string]any, path []string, v string) {
	cur := doc
	for _, k := range path[:len(path)-1] {
		next, ok := cur[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[k] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = v
}

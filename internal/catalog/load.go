package catalog

import (
	"fmt"
	"log/slog"
	"path/filepath"
)

// Load reads every spec under dir once and returns the desired state. Spec
// problems do not make Load fail: they are listed in State.Errors, and the
// documents they affect are left out while every other document applies. The
// error is for a directory that cannot be read at all.
func Load(dir string) (*State, error) {
	t, err := newTracker(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return t.refresh(nil)
}

// bornDoc is a document in force with the generation it first appeared in;
// when two documents conflict (same name, same listener port) the older one
// stays and the newer is reported.
type bornDoc struct {
	doc  *document
	born int64
}

// fileState is what the tracker remembers of one file.
type fileState struct {
	hash    [32]byte
	errs    []SpecError
	warns   []SpecError
	inForce []bornDoc // what the file contributes to the State
	good    []bornDoc // its last error-free version
	hasGood bool
	stale   bool // inForce is the last good version, not the current content
}

// tracker turns successive scans of a directory into States, remembering
// each file's last good documents.
type tracker struct {
	root    string
	log     *slog.Logger
	include func(rel string) bool // nil: every file
	parsed  func()                // nil, or called for every file parsed
	gen     int64
	files   map[string]*fileState
	applied map[docKey]*document // listener documents in the last State

	// largeFile, when positive, makes refresh leave a changed file larger
	// than it as it was (its last documents stay in force) and list it in
	// deferred, for the caller to parse aside and hand back in ready: the
	// edits of other files then apply without waiting for a large parse.
	largeFile int
	deferred  []sourceFile
	ready     map[string]readyParse
}

// readyParse is a file parsed aside, for the content hash it had.
type readyParse struct {
	hash [32]byte
	pf   parsedFile
}

func newTracker(dir string, log *slog.Logger) (*tracker, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("config directory %s: %w", dir, err)
	}
	return &tracker{root: root, log: log, files: map[string]*fileState{}, applied: map[docKey]*document{}}, nil
}

// refresh rescans the tree and assembles a new State. onDir sees every
// directory before it is listed, so a watch added there misses no file.
func (t *tracker) refresh(onDir func(string)) (*State, error) {
	sc := scanner{root: t.root, log: t.log, onDir: onDir, include: t.include}
	if err := sc.scan(); err != nil {
		return nil, err
	}
	t.gen++
	t.deferred = nil
	next := make(map[string]*fileState, len(sc.files))
	for _, sf := range sc.files {
		if fs := t.update(sf, t.files[sf.rel]); fs != nil {
			next[sf.rel] = fs
		}
	}
	t.ready = nil // each was applied, or is stale: the file changed again
	for rel := range t.files {
		if next[rel] == nil {
			t.log.Info("spec file removed", "file", rel)
		}
	}
	t.files = next
	return assemble(t.files, t.applied), nil
}

func (t *tracker) update(sf sourceFile, prev *fileState) *fileState {
	h := sf.hash()
	if prev != nil && prev.hash == h {
		return prev
	}
	if sf.parsed == nil && len(sf.data) == 0 && prev != nil && len(prev.good) > 0 {
		return emptied(sf, h, prev, t.log)
	}
	var pf parsedFile
	if r, ok := t.ready[sf.rel]; ok && r.hash == h {
		pf = r.pf
	} else if t.largeFile > 0 && sf.parsed == nil && len(sf.data) > t.largeFile {
		t.deferred = append(t.deferred, sf)
		return prev // nil for a new file: it applies once parsed
	} else {
		pf = sf.parse()
		if t.parsed != nil {
			t.parsed()
		}
	}
	if pf.notSpec != "" {
		t.log.Debug("skipping file that holds no specs", "file", sf.rel, "reason", pf.notSpec)
	}
	fs := &fileState{hash: h, errs: pf.errs, warns: pf.warns}
	docs := t.born(pf.docs, prev)
	switch {
	case len(pf.errs) == 0:
		fs.inForce, fs.good, fs.hasGood = docs, docs, true
		t.log.Info("spec file loaded", "file", sf.rel, "documents", len(docs))
	case prev != nil && prev.hasGood:
		fs.inForce, fs.good, fs.hasGood, fs.stale = prev.good, prev.good, true, true
		t.log.Warn("spec file has errors; keeping its last good documents",
			"file", sf.rel, "errors", len(pf.errs), "first", pf.errs[0].Error())
	default:
		fs.inForce = docs
		t.log.Warn("spec file has errors; applying its valid documents only",
			"file", sf.rel, "errors", len(pf.errs), "first", pf.errs[0].Error())
	}
	return fs
}

// emptied handles a spec file that was truncated to zero bytes. Editors and
// `cat > file` truncate before they write, and a rescan can fall between the
// two: applying "no documents" would pull the file's listeners and filters
// from every Envoy for a moment. A deliberate removal deletes the file (or
// leaves comments), so an empty file keeps its last good documents.
func emptied(sf sourceFile, h [32]byte, prev *fileState, log *slog.Logger) *fileState {
	warn := SpecError{File: sf.rel, Line: 1,
		Message: "file is empty; its last good specs stay in force (delete the file to remove them)"}
	log.Warn("spec file is empty; keeping its last good documents", "file", sf.rel)
	return &fileState{hash: h, warns: []SpecError{warn}, inForce: prev.good, good: prev.good,
		hasGood: true, stale: true}
}

// born dates documents: one that the file already had keeps its date.
func (t *tracker) born(docs []*document, prev *fileState) []bornDoc {
	old := map[docKey]int64{}
	if prev != nil {
		for _, set := range [][]bornDoc{prev.good, prev.inForce} {
			for _, bd := range set {
				old[bd.doc.key] = bd.born
			}
		}
	}
	out := make([]bornDoc, 0, len(docs))
	for _, d := range docs {
		b, ok := old[d.key]
		if !ok {
			b = t.gen
		}
		out = append(out, bornDoc{doc: d, born: b})
	}
	return out
}

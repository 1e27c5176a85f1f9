package catalog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultDebounce is how long Watch waits for the directory to go quiet.
//
// Saves measured on Linux (cat >, cp + mv, sed -i, vim, a Python write; a
// 1 KB and a 390 KB file) spread their events over at most 4.5 ms, with no
// gap between two events above 4 ms; with the CPUs oversubscribed three
// times, at most 17 ms and 11 ms. 25 ms covers that with room to spare.
// Were a save still split, its first half is rarely harmful: a file that
// fails to parse, or is empty, keeps its last good documents.
const DefaultDebounce = 25 * time.Millisecond

// missingPoll is how often Watch looks for a config directory that is
// missing or unreadable: no file event can announce that it is back.
const missingPoll = 500 * time.Millisecond

// WatchOptions configures Watch. The zero value is ready to use.
type WatchOptions struct {
	// Debounce is how long the tree must be quiet before it is re-read, so
	// that a burst (an editor's save, a ConfigMap update) gives one reload.
	// Zero means DefaultDebounce. A steady stream of events still reloads at
	// least every 10 debounce periods.
	//
	// There is no leading edge (reloading on the first event of a burst):
	// that event is most often a write into a file that is still being
	// written (cat >, or the temporary file of a rename save), and a
	// partly written file can be valid YAML with a value cut short.
	Debounce time.Duration
	// Logger receives reload and spec error logs; nil means none are written.
	Logger *slog.Logger
	// Registerer receives the catalog metrics; nil means none are registered.
	// Watch fails if they cannot be registered (e.g. a second Watch on the
	// same registry).
	Registerer prometheus.Registerer
	// OnHealth, when set, is told when the config directory becomes missing
	// or unreadable after the start (err names the directory and the cause)
	// and when it is read again (err is nil). It runs on Watch's goroutine,
	// before the onChange call that any new content brings. Meanwhile the
	// last State stays in force; an owner shows err in its status and
	// readiness.
	OnHealth func(err error)

	// largeFile overrides defaultLargeFile; parseGate, when set, runs
	// before each parse aside (tests hold it to observe the interim State).
	largeFile int
	parseGate func()
}

// defaultLargeFile is the size past which a changed file is parsed aside
// while the edits of other files apply: parsing runs at a few MB/s, so a
// file of this size takes about a tenth of a second.
const defaultLargeFile = 512 << 10

// Watch loads dir, calls onChange with the State, then watches the whole tree
// and calls onChange again each time the State changes, until ctx is done
// (it then returns nil). onChange runs on Watch's goroutine and is called
// only when the State differs in content (errors and warnings included) from
// the last one delivered.
//
// Every change (create, write, remove, rename, chmod, an editor's
// write-then-rename, a new subdirectory, a ConfigMap ..data symlink swap)
// triggers a rescan of the tree after the debounce; files whose content did
// not change are not parsed again, so a large file costs its parse only
// when it changes. A file that loaded without errors and is then edited into a
// state with errors keeps its last good documents in force, and its new
// errors are reported in State.Errors; other files' changes still apply, and
// fixing the file applies it (a chmod that makes an unreadable file readable
// counts as a fix). A file truncated to zero bytes (an in-place
// save seen between its truncate and its write) likewise keeps its last good
// documents, with a warning; a file left with only comments has no documents.
// A removed file's documents go away. Conflicts
// between files are settled in favour of the older document (see the
// package documentation).
//
// Watch fails only if dir cannot be read or watched at the start, or the
// metrics cannot be registered. If dir goes missing or becomes unreadable
// later, the last State stays in force, OnHealth is told, and dir is looked
// for every 500 ms; once it is back (recreated, remounted, made readable) it
// is watched again and its content applies like any change.
func Watch(ctx context.Context, dir string, opts WatchOptions, onChange func(*State)) error {
	w, err := newWatcher(dir, opts, onChange)
	if err != nil {
		return err
	}
	defer w.fsw.Close()
	st, err := w.reload()
	if err != nil {
		return err
	}
	w.deliver(st)
	// Only edits are parsed aside: the initial State holds every file.
	w.t.largeFile = w.largeFile
	return w.loop(ctx)
}

func newWatcher(dir string, opts WatchOptions, onChange func(*State)) (*watcher, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "catalog")
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	t, err := newTracker(dir, log)
	if err != nil {
		return nil, err
	}
	t.parsed = m.parses.Inc
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("catalog: file watcher: %w", err)
	}
	w := &watcher{t: t, fsw: fsw, log: log, watched: map[string]string{}, onChange: onChange,
		onHealth: opts.OnHealth, debounce: opts.Debounce, metrics: m,
		parsedAside: make(chan parsedAside), aside: map[string][32]byte{}, parseGate: opts.parseGate,
		largeFile: cmp.Or(opts.largeFile, defaultLargeFile)}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	return w, nil
}

type watcher struct {
	t        *tracker
	fsw      *fsnotify.Watcher
	log      *slog.Logger
	watched  map[string]string // watched directory → the real directory it resolved to
	onChange func(*State)
	onHealth func(error)
	debounce time.Duration
	metrics  *metrics
	last     *State
	dirErr   error // why the last rescan failed; nil when it succeeded

	// Large files parsed aside (see tracker.largeFile): results come back
	// on parsedAside; aside holds the content hash of each file being
	// parsed; asideWG waits for those parses when the loop ends.
	parsedAside chan parsedAside
	aside       map[string][32]byte
	asideWG     sync.WaitGroup
	parseGate   func()
	stopAside   <-chan struct{}
	largeFile   int
}

// parsedAside is the outcome of a parse aside.
type parsedAside struct {
	rel string
	readyParse
}

func (w *watcher) loop(ctx context.Context) error {
	d := debouncer{quiet: w.debounce, timer: time.NewTimer(time.Hour)}
	d.timer.Stop()
	defer d.timer.Stop()
	stop := make(chan struct{})
	defer w.asideWG.Wait()
	defer close(stop)
	w.stopAside = stop
	var poll *time.Ticker
	for {
		var pollC <-chan time.Time
		if poll != nil {
			pollC = poll.C
		}
		select {
		case <-ctx.Done():
			if poll != nil {
				poll.Stop()
			}
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("catalog: file watcher closed")
			}
			w.log.Debug("file event", "path", ev.Name, "op", ev.Op.String())
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				w.forget(ev.Name)
			}
			d.schedule()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("catalog: file watcher closed")
			}
			// Overflow means lost events: a rescan recovers whatever they were.
			w.log.Warn("file watcher error; rescanning", "err", err)
			d.schedule()
		case <-pollC:
			if info, err := os.Stat(w.t.root); err == nil && info.IsDir() {
				d.schedule() // back: the rescan watches it again
			}
		case <-d.timer.C:
			d.fired()
			w.apply()
		case r := <-w.parsedAside:
			if w.aside[r.rel] == r.hash {
				delete(w.aside, r.rel)
			}
			w.t.ready = map[string]readyParse{r.rel: r.readyParse}
			w.metrics.parses.Inc()
			w.apply()
		}
		poll = w.pollWhileUnhealthy(poll)
	}
}

// pollWhileUnhealthy starts the missing-directory poll when the last rescan
// failed and stops it once one succeeded.
func (w *watcher) pollWhileUnhealthy(poll *time.Ticker) *time.Ticker {
	switch {
	case w.dirErr != nil && poll == nil:
		return time.NewTicker(missingPoll)
	case w.dirErr == nil && poll != nil:
		poll.Stop()
		return nil
	}
	return poll
}

// debouncer runs a rescan once events have been quiet for a while, or at
// the latest 10 quiet periods after the first of a steady stream.
type debouncer struct {
	quiet        time.Duration
	timer        *time.Timer
	pendingSince time.Time
}

func (d *debouncer) schedule() {
	now := time.Now()
	if d.pendingSince.IsZero() {
		d.pendingSince = now
	}
	delay := d.quiet
	if now.Sub(d.pendingSince) > 10*d.quiet {
		delay = 0
	}
	d.timer.Reset(delay)
}

func (d *debouncer) fired() { d.pendingSince = time.Time{} }

func (w *watcher) apply() {
	st, err := w.reload()
	w.setHealth(err)
	if err != nil {
		// Whatever comes back at these paths is another directory, and
		// inotify's watches went with the old ones.
		for dir := range w.watched {
			w.forget(dir)
		}
		w.metrics.reloads.WithLabelValues(resultFailed).Inc()
		return
	}
	w.parseDeferred()
	if reflect.DeepEqual(st, w.last) {
		w.metrics.reloads.WithLabelValues(resultUnchanged).Inc()
		return
	}
	w.metrics.reloads.WithLabelValues(resultChanged).Inc()
	w.deliver(st)
}

// parseDeferred parses aside each large file the last rescan left as it
// was, unless that content is being parsed already; the result comes back
// to the loop, which applies it. The initial load parses everything.
func (w *watcher) parseDeferred() {
	for _, sf := range w.t.deferred {
		h := sf.hash()
		if cur, ok := w.aside[sf.rel]; ok && cur == h {
			continue
		}
		w.aside[sf.rel] = h
		w.log.Info("large spec file changed; parsing it while other edits apply", "file", sf.rel, "bytes", len(sf.data))
		w.asideWG.Add(1)
		go func() {
			defer w.asideWG.Done()
			if w.parseGate != nil {
				w.parseGate()
			}
			r := parsedAside{rel: sf.rel, readyParse: readyParse{hash: h, pf: sf.parse()}}
			select {
			case w.parsedAside <- r:
			case <-w.stopAside:
			}
		}()
	}
}

// setHealth records the outcome of a rescan, logging and reporting only
// the transitions between readable and not.
func (w *watcher) setHealth(err error) {
	was := w.dirErr
	w.dirErr = err
	switch {
	case err != nil && was == nil:
		w.metrics.dirUnreadable.Set(1)
		w.log.Error("config directory unreadable; keeping the last desired state and looking for it every "+
			missingPoll.String(), "dir", w.t.root, "err", err)
	case err != nil:
		w.log.Debug("config directory still unreadable", "dir", w.t.root, "err", err)
		return
	case was != nil:
		w.metrics.dirUnreadable.Set(0)
		w.log.Info("config directory readable again; watching it", "dir", w.t.root)
	default:
		return
	}
	if w.onHealth != nil {
		w.onHealth(err)
	}
}

// deliver logs what is new in st and hands it to onChange.
func (w *watcher) deliver(st *State) {
	old := map[SpecError]bool{}
	if w.last != nil {
		for _, e := range append(w.last.Errors, w.last.Warnings...) {
			old[e] = true
		}
	}
	for _, e := range st.Errors {
		if !old[e] {
			w.log.Warn("spec error", "error", e.Error())
		}
	}
	for _, e := range st.Warnings {
		if !old[e] {
			w.log.Warn("spec warning", "warning", e.Error())
		}
	}
	w.log.Info("desired state changed", "listeners", len(st.Listeners), "clusters", len(st.Clusters),
		"plugins", len(st.Plugins), "errors", len(st.Errors), "warnings", len(st.Warnings))
	w.metrics.specErrors.Set(float64(len(st.Errors)))
	w.last = st
	w.onChange(st)
}

// reload rescans the tree, watching every directory before it is listed so
// that no file created meanwhile goes unnoticed, and drops watches on
// directories that are gone.
func (w *watcher) reload() (*State, error) {
	seen := map[string]bool{}
	st, err := w.t.refresh(func(dir string) {
		seen[dir] = true
		w.watch(dir)
	})
	if err != nil {
		return nil, err
	}
	for dir := range w.watched {
		if !seen[dir] {
			_ = w.fsw.Remove(dir) // fails harmlessly if the directory is already gone
			delete(w.watched, dir)
		}
	}
	return st, nil
}

// watch adds dir, re-adding it when it is a symlink that now resolves
// elsewhere (a ConfigMap subdirectory after a ..data swap).
func (w *watcher) watch(dir string) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return
	}
	prev, ok := w.watched[dir]
	if ok && prev == real {
		return
	}
	if ok {
		_ = w.fsw.Remove(dir) // the old target may be deleted already
	}
	if err := w.fsw.Add(dir); err != nil {
		w.log.Warn("cannot watch directory; its changes are seen only with other changes", "dir", dir, "err", err)
		return
	}
	w.watched[dir] = real
}

// forget drops the watch of a directory that was removed or renamed away,
// so that one created in its place, even within the debounce, is watched
// again. (Comparing inode numbers would not do: ext4 reuses a deleted
// directory's number for the next one made.) path need not be a directory.
func (w *watcher) forget(path string) {
	if _, ok := w.watched[path]; !ok {
		return
	}
	_ = w.fsw.Remove(path) // inotify has usually dropped it already
	delete(w.watched, path)
}

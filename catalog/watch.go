package catalog

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
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
	// Logger receives reload and spec error logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the catalog metrics; nil means none are registered.
	Registerer prometheus.Registerer
}

// Watch loads dir, calls onChange with the State, then watches the whole tree
// and calls onChange again each time the State changes, until ctx is done
// (it then returns nil). onChange runs on Watch's goroutine and is called
// only when the State differs in content (errors and warnings included) from
// the last one delivered.
//
// Every change (create, write, remove, rename, an editor's write-then-rename,
// a new subdirectory, a ConfigMap ..data symlink swap) triggers a rescan of
// the tree after the debounce; files whose content did not change are not
// parsed again. A file that loaded without errors and is then edited into a
// state with errors keeps its last good documents in force, and its new
// errors are reported in State.Errors; other files' changes still apply, and
// fixing the file applies it. A file truncated to zero bytes (an in-place
// save seen between its truncate and its write) likewise keeps its last good
// documents, with a warning; a file left with only comments has no documents.
// A removed file's documents go away. Conflicts
// between files are settled in favour of the older document (see the
// package documentation).
//
// Watch fails only if dir cannot be read or watched at the start. If dir
// becomes unreadable later, the last State stays in force and the error is
// logged.
func Watch(ctx context.Context, dir string, opts WatchOptions, onChange func(*State)) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "catalog")
	t, err := newTracker(dir, log)
	if err != nil {
		return err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fsw.Close()
	w := &watcher{t: t, fsw: fsw, log: log, watched: map[string]string{}, onChange: onChange,
		debounce: opts.Debounce, metrics: newMetrics(opts.Registerer)}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	st, err := w.reload()
	if err != nil {
		return err
	}
	w.deliver(st)
	return w.loop(ctx)
}

type watcher struct {
	t        *tracker
	fsw      *fsnotify.Watcher
	log      *slog.Logger
	watched  map[string]string // watched directory → the real directory it resolved to
	onChange func(*State)
	debounce time.Duration
	metrics  *metrics
	last     *State
}

func (w *watcher) loop(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pendingSince time.Time
	schedule := func() {
		now := time.Now()
		if pendingSince.IsZero() {
			pendingSince = now
		}
		delay := w.debounce
		if now.Sub(pendingSince) > 10*w.debounce {
			delay = 0
		}
		timer.Reset(delay)
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("catalog: file watcher closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue // metadata only; content is unchanged
			}
			w.log.Debug("file event", "path", ev.Name, "op", ev.Op.String())
			schedule()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("catalog: file watcher closed")
			}
			// Overflow means lost events: a rescan recovers whatever they were.
			w.log.Warn("file watcher error; rescanning", "err", err)
			schedule()
		case <-timer.C:
			pendingSince = time.Time{}
			w.apply()
		}
	}
}

func (w *watcher) apply() {
	st, err := w.reload()
	if err != nil {
		w.metrics.reloads.WithLabelValues(resultFailed).Inc()
		w.log.Error("config directory unreadable; keeping the last desired state", "err", err)
		return
	}
	if reflect.DeepEqual(st, w.last) {
		w.metrics.reloads.WithLabelValues(resultUnchanged).Inc()
		return
	}
	w.metrics.reloads.WithLabelValues(resultChanged).Inc()
	w.deliver(st)
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

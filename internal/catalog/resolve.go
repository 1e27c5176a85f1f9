package catalog

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
)

// assemble checks documents against each other and builds the State.
//
// Conflicts between documents (a duplicate name, two listeners fighting over
// one port) are settled by age: the document that has been in force longer
// stays and the newer one is reported and left out, so an edit elsewhere can
// never take down what already works. Documents of the same age (as in a
// one-shot Load) are ordered by file path and line. A listener whose route
// names a cluster that does not exist is a bad edit like any other: its last
// good version stays in force when it had one whose clusters all exist, and
// otherwise it is left out whole, since Envoy would reject or black-hole it.
// Likewise a cluster that was in force and is removed (its file deleted or
// its document cut) while a route still uses it stays in force, reported at
// that route, until no route uses it.
//
// applied holds the listener and cluster documents in force in the previous
// State (nil for a one-shot Load); assemble records the ones in force now.
func assemble(files map[string]*fileState, applied map[docKey]*document) *State {
	st := &State{Listeners: []Listener{}, Clusters: []Cluster{}, Plugins: []Plugin{},
		Errors: []SpecError{}, Warnings: []SpecError{}}
	var all []bornDoc
	for _, f := range files {
		st.Errors = append(st.Errors, f.errs...)
		st.Warnings = append(st.Warnings, f.warns...)
		all = append(all, f.inForce...)
	}
	slices.SortFunc(all, func(a, b bornDoc) int {
		return cmp.Or(cmp.Compare(a.born, b.born), cmp.Compare(a.doc.source.File, b.doc.source.File),
			cmp.Compare(a.doc.source.Line, b.doc.source.Line))
	})
	docs := dedupe(all, st)
	prev := maps.Clone(applied)
	clear(applied)
	clusters := map[string]bool{}
	for _, d := range docs {
		if d.cluster != nil {
			addCluster(d, clusters, applied, st)
		}
	}
	keepRemovedClusters(docs, clusters, prev, applied, st)
	addListeners(docs, clusters, prev, applied, st)
	for _, d := range docs {
		if d.plugin != nil {
			st.Plugins = append(st.Plugins, *d.plugin)
			warnUnmatchedPorts(d, st)
			warnUntargeted(d, st)
		}
		if d.access != nil {
			st.NodeAccess = append(st.NodeAccess, *d.access)
		}
	}
	sortState(st)
	return st
}

func addCluster(d *document, clusters map[string]bool, applied map[docKey]*document, st *State) {
	clusters[d.key.name] = true
	st.Clusters = append(st.Clusters, *d.cluster)
	if applied != nil {
		applied[d.key] = d
	}
}

// keepRemovedClusters puts back clusters that were in force and are gone
// now while a listener's route still names them: removing a cluster before
// the routes that use it must not take their listeners off every Envoy.
func keepRemovedClusters(docs []*document, clusters map[string]bool, prev, applied map[docKey]*document, st *State) {
	for _, d := range docs {
		if d.listener == nil {
			continue
		}
		for _, r := range unresolved(d, clusters) {
			c := prev[docKey{kind: KindCluster, name: r.value}]
			if c == nil {
				continue
			}
			addCluster(c, clusters, applied, st)
			st.Errors = append(st.Errors, errAt(d.source, r.line,
				"%s: cluster %q was removed but this route still uses it; it stays in force until no route does", r.path, r.value))
		}
	}
}

func errAt(src Source, line int, format string, args ...any) SpecError {
	return SpecError{File: src.File, Line: line, Message: fmt.Sprintf(format, args...)}
}

// dedupe keeps the first (oldest) document of each kind and name.
func dedupe(all []bornDoc, st *State) []*document {
	first := map[docKey]*document{}
	var out []*document
	for _, bd := range all {
		d := bd.doc
		if prev, dup := first[d.key]; dup {
			if d.kind != prev.kind {
				st.Errors = append(st.Errors, errAt(d.source, d.source.Line,
					"duplicate plugin name %q: %s %q is already defined at %s, which stays in force "+
						"(plugins of every kind share one set of names)", d.key.name, prev.kind, d.key.name, prev.source))
				continue
			}
			st.Errors = append(st.Errors, errAt(d.source, d.source.Line,
				"duplicate %s name %q: already defined at %s, which stays in force", d.kind, d.key.name, prev.source))
			continue
		}
		first[d.key] = d
		out = append(out, d)
	}
	return out
}

// addListeners keeps listeners whose clusters exist and that do not collide
// with an older listener. A listener naming a missing cluster falls back to
// the version of it that was in force (prev) when that one still resolves;
// the listeners in force now are recorded in applied.
func addListeners(docs []*document, clusters map[string]bool, prev, applied map[docKey]*document, st *State) {
	var kept []*document
	for _, d := range docs {
		if d.listener == nil {
			continue
		}
		if faults := listenerFaults(d, clusters, st); len(faults) > 0 {
			g := prev[d.key]
			keep := g != nil && g != d && g.source.File == d.source.File && len(listenerFaults(g, clusters, nil)) == 0
			for _, r := range faults {
				msg := r.value
				if keep {
					msg += fmt.Sprintf("; listener %q keeps its last good version", d.key.name)
				}
				st.Errors = append(st.Errors, errAt(d.source, r.line, "%s", msg))
			}
			if !keep {
				continue
			}
			d = g
		}
		if other := collision(d, kept); other != nil {
			l := d.listener
			st.Errors = append(st.Errors, errAt(d.source, d.source.Line,
				"listener %q on %s conflicts with listener %q at %s: same port and their selectors can match the same Envoy",
				l.Name, net.JoinHostPort(l.Address, strconv.Itoa(int(l.Port))), other.key.name, other.source))
			continue
		}
		kept = append(kept, d)
		if applied != nil {
			applied[d.key] = d
		}
		st.Listeners = append(st.Listeners, *d.listener)
	}
}

// listenerFaults lists what keeps listener d out (as messages in ref.value):
// routes naming a missing cluster, certificate files that do not load.
// Warnings about certificate files go to st when it is not nil.
func listenerFaults(d *document, clusters map[string]bool, st *State) []ref {
	var out []ref
	for _, r := range unresolved(d, clusters) {
		out = append(out, ref{value: fmt.Sprintf("%s: cluster %q does not exist", r.path, r.value), line: r.line})
	}
	for _, t := range d.tls {
		errMsg, warnMsg := checkTLSFiles(t)
		if errMsg != "" {
			out = append(out, ref{value: errMsg, line: t.line})
		}
		if warnMsg != "" && st != nil {
			st.Warnings = append(st.Warnings, errAt(d.source, t.line, "%s", warnMsg))
		}
	}
	return out
}

// unresolved lists the routes of d whose cluster does not exist.
func unresolved(d *document, clusters map[string]bool) []ref {
	var out []ref
	for _, r := range d.routes {
		if !clusters[r.value] {
			out = append(out, r)
		}
	}
	return out
}

// collision finds a kept listener that one Envoy could be asked to bind
// together with d: same port, addresses that overlap (equal, or either a
// wildcard) and selectors that can both match one node.
func collision(d *document, kept []*document) *document {
	l := d.listener
	for _, k := range kept {
		o := k.listener
		if o.Port == l.Port && addressesOverlap(o.Address, l.Address) && selectorsOverlap(o.Selector, l.Selector) {
			return k
		}
	}
	return nil
}

func addressesOverlap(a, b string) bool {
	wild := func(s string) bool { ip := net.ParseIP(s); return ip != nil && ip.IsUnspecified() }
	return a == b || wild(a) || wild(b)
}

// selectorsOverlap reports whether some node's labels could satisfy both
// selectors: only a key both require with different values rules that out.
func selectorsOverlap(a, b map[string]string) bool {
	for k, va := range a {
		if vb, ok := b[k]; ok && vb != va {
			return false
		}
	}
	return true
}

// warnUnmatchedPorts flags match ports that no listener reachable by the
// plugin's selector uses: the plugin would silently never run there.
func warnUnmatchedPorts(d *document, st *State) {
	for _, r := range d.ports {
		found := false
		for _, l := range st.Listeners {
			if strconv.Itoa(int(l.Port)) == r.value && selectorsOverlap(l.Selector, d.plugin.Selector) {
				found = true
				break
			}
		}
		if !found {
			st.Warnings = append(st.Warnings, errAt(d.source, r.line,
				"%s: no listener on port %s can match this plugin's selector, so this port never applies", r.path, r.value))
		}
	}
}

// warnUntargeted flags a plugin limited to hosts and paths that selects no
// route of any listener its selector can reach: it would never run.
func warnUntargeted(d *document, st *State) {
	pl := d.plugin
	if len(pl.Targets) == 0 || pl.Type == PluginNetwork {
		return
	}
	for _, l := range st.Listeners {
		if selectorsOverlap(l.Selector, pl.Selector) && pl.OnListener(l) {
			return
		}
	}
	line := d.source.Line
	if d.targetsAt != nil {
		line = d.targetsAt.Line
	}
	st.Warnings = append(st.Warnings, errAt(d.source, line,
		"plugin %q matches no route: no listener its selector can reach has a route on these hosts, paths and ports, so it never runs", pl.Name))
}

func sortState(st *State) {
	slices.SortFunc(st.Listeners, func(a, b Listener) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.NodeAccess, func(a, b NodeAccess) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Plugins, func(a, b Plugin) int {
		return cmp.Or(cmp.Compare(a.Phase, b.Phase), cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Name, b.Name))
	})
	for _, errs := range [][]SpecError{st.Errors, st.Warnings} {
		slices.SortFunc(errs, func(a, b SpecError) int {
			return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Message, b.Message))
		})
	}
}

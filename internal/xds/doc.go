// Package xds turns the desired state into Envoy resources and delivers
// them to every connected Envoy over ADS (state-of-the-world and delta).
//
// Two parts, with a hard line between them:
//
//   - Translation (translate*.go): Translate, a pure function from an
//     Input and a node's labels to Envoy resources. No goroutines, locks,
//     clock or I/O.
//   - The delivery engine (every other file): Server takes the events of
//     ADS streams (opened, closed, requests, ACKs, NACKs), module downloads
//     the module server saw (ModuleServed), new Inputs (Update), withdrawn
//     grants (Reauthorize) and its timers, on an injected clock, and
//     decides what each Envoy is sent and when. It serves go-control-plane's
//     ADS server from a cache of its own (cache.go).
//
// Glossary (docs/design/delivery.md has the states, events and sequences):
//
//   - group: the nodes of one label set in one rollout bucket; they share
//     one snapshot.
//   - snapshot: a group's resources as served, per type a content-hash
//     version and each resource marshaled once.
//   - first module: a plugin's module sent to a group that never ran the
//     plugin; it is fetched as a listener warms, then confirmed.
//   - swap: a module sent to a group that runs another module of the
//     plugin; Envoy confirms it before it applies it.
//   - re-push: a config sent again, marked with an attempt, after a
//     cache-miss NACK.
//   - module refusal: a node refused a plugin's module; recorded for its
//     label set, which is then sent the plugin's last good config.
//   - node denial: the server refused a node (NodeAccess, a switched
//     identity, a withdrawn grant).
//   - held module: what a node already runs when it comes to this server.
package xds

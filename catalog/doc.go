// Package catalog reads declarative spec files (Listener, Cluster, WasmPlugin)
// from a directory, validates them and produces the desired state as a plain
// intermediate representation (IR) with no Envoy types. It never touches the
// network.
//
// # Files
//
// Every *.yaml and *.yml file under the directory is read, in subdirectories
// too; a file may hold several documents separated by ---. A YAML file none
// of whose documents has apiVersion or kind (an Envoy bootstrap, a compose
// file) is skipped. A file with another extension that contains a spec
// apiVersion (x.json, x.yaml.bak) is an error, because the user probably
// expects it to apply. Entries whose names start with '.' are skipped, which
// also makes Kubernetes ConfigMap mounts load each file once, through the
// top-level symlinks rather than the ..data and ..<timestamp> directories.
// Symlinks to files and directories are followed.
//
// # Documents
//
// Every document has apiVersion, kind, metadata and spec. metadata.name is
// required and must be a DNS-1123 subdomain (lowercase letters, digits, '-'
// and '.', at most 253 characters); names are unique per kind, and both
// WasmPlugin API versions share one set of names. metadata.namespace, labels
// and annotations are accepted, as are the bookkeeping fields of a
// `kubectl get -o yaml` dump (uid, resourceVersion, generation,
// creationTimestamp, managedFields, selfLink) and a top-level status; none
// of them has any effect. Every other unknown field is an error.
//
//	apiVersion: wasmxds.dev/v1alpha1
//	kind: Listener
//	metadata: {name: httpbin-ingress}
//	spec:
//	  selector: {matchLabels: {app: httpbin}}  # Envoys whose node.metadata.labels match; empty: all
//	  address: 0.0.0.0                         # an IP address; the default
//	  port: 10000                              # 1-65535, required
//	  routes:                                  # the catch-all host "*"; the first match wins
//	  - match: {prefix: /}                     # exactly one of prefix and path, starting with '/'
//	    cluster: httpbin                       # a Cluster that must exist
//	---
//	apiVersion: wasmxds.dev/v1alpha1
//	kind: Cluster
//	metadata: {name: httpbin}
//	spec:
//	  endpoints: ["127.0.0.1:8080", "httpbin.internal:80"]  # host:port, at least one
//
// A listener may also group routes by the request's Host (virtual hosts),
// add header matches, timeouts and retries to a route, and terminate TLS:
//
//	spec:
//	  port: 8443
//	  tls: {certFile: /etc/envoy/tls/default.crt, keyFile: /etc/envoy/tls/default.key}
//	  hosts:
//	  - domains: ["api.example.com", "api.example.com:*"]
//	    tls: {certFile: /etc/envoy/tls/api.crt, keyFile: /etc/envoy/tls/api.key}
//	    routes:
//	    - match: {prefix: /v1, headers: [{name: x-env, exact: canary}]}
//	      cluster: api-canary
//	      timeout: 5s
//	      retries: {attempts: 2, on: "5xx,reset"}
//	    - match: {prefix: /}
//	      cluster: api
//	  routes:                                  # optional with hosts: every other host
//	  - match: {prefix: /}
//	    cluster: www
//
// Rules:
//
//   - routes and hosts: at least one route in all. Without top-level routes,
//     a request for a host no entry of hosts lists gets Envoy's 404.
//   - hosts[].domains: at least one; host, host:port or host:* ("*" for any
//     port), with one wildcard at the start (*.example.com, *-api.example.com)
//     or end (api.*), or "*" alone; compared in lowercase. A domain belongs
//     to one host of the listener, and "*" is taken by top-level routes.
//   - match.headers: each has name and exactly one of exact, prefix (not
//     empty) and present: true. All must match.
//   - timeout: a Go duration (500ms, 5s, 1m30s), positive; the default is
//     15s, Envoy's.
//   - retries.attempts: 1-10 (default 1). retries.on: a comma-separated list
//     of Envoy's retry conditions 5xx, gateway-error, reset,
//     reset-before-request, connect-failure, envoy-ratelimited,
//     retriable-4xx, refused-stream, http3-post-connect-failure, cancelled,
//     deadline-exceeded, internal, resource-exhausted, unavailable; the
//     default retries only requests that never reached the application:
//     connect-failure,refused-stream,reset-before-request.
//   - tls: certFile and keyFile, absolute paths as Envoy sees them. Envoy
//     gets them as SDS secrets that name the files and reloads them when
//     they change (a file moved into place, as renewers and Kubernetes
//     Secret volumes do), with no push. A host's own tls is served to clients
//     whose SNI is one of its domains (DNS names or *.suffix, each name for
//     one certificate); the listener's tls to the others. With host
//     certificates and none on the listener, only clients whose SNI names
//     such a host are served; with no tls at all, the listener is plain
//     text. When wasmxds can read the files, a pair that does not load is an
//     error at the tls line (the listener is left out, or keeps its last good
//     version); files it cannot see are a warning, since Envoy may see
//     another filesystem, and Envoy's own refusal shows as a NACK in status.
//
// A TCP listener sends every connection to one cluster (Envoy's tcp_proxy),
// after the NETWORK plugins that apply to it:
//
//	spec:
//	  port: 9000
//	  protocol: TCP        # HTTP (the default) or TCP
//	  cluster: echo        # required with TCP; routes, hosts and tls are not allowed
//
// Two listeners conflict when an Envoy could be asked to bind both: same
// port, addresses equal or either one a wildcard (0.0.0.0, ::), and
// selectors that can match one node (they can unless some label is required
// by both with different values; an empty selector matches everything).
//
// # WasmPlugin
//
// kind WasmPlugin is accepted under wasmxds.dev/v1alpha1 and, unchanged,
// under Istio's extensions.istio.io/v1alpha1, with Istio's fields:
//
//	spec:
//	  selector: {matchLabels: {app: httpbin}}
//	  url: oci://registry:5000/filters/add-header:v1
//	  sha256: ""                  # optional pin: 64 hex digits, sha256: optional
//	  imagePullPolicy: IfNotPresent
//	  imagePullSecret: ""         # docker config.json credentials entry or file name
//	  pluginConfig: {header: x-wasm}
//	  pluginName: ""              # Envoy root_id
//	  phase: STATS
//	  priority: 10
//	  failStrategy: FAIL_CLOSE
//	  vmConfig: {env: [{name: K, value: V}, {name: HOME, valueFrom: HOST}]}
//	  match: [{mode: SERVER, ports: [{number: 10000}]}]
//	  type: HTTP
//
// Field rules:
//
//   - url: parsed by the one grammar of internal/modref, which the fetcher
//     and the CLI share, and kept in its canonical spelling. A reference
//     without a scheme gets oci://. oci:// references are
//     [registry/]repository[:tag][@sha256:hex] with Docker's shorthand: a
//     first element that is not a host (no "." or ":", not localhost) means
//     docker.io, and a single-element Docker Hub repository lives under
//     library/ (add-header:v1 is oci://docker.io/library/add-header:v1). No
//     tag and no digest means :latest. http:// and https:// are allowed.
//     file:///abs/path is kept; file:rel/path and file:./path (no "//") are
//     resolved against the spec file's directory and become
//     file:///abs/path. Credentials in the url (user:password@) are refused:
//     use imagePullSecret. Any other scheme is an error.
//   - sha256: 64 hex digits in any case, optionally prefixed with sha256:;
//     kept as lowercase hex. When the url carries @sha256:hex, the pin must
//     equal it.
//   - imagePullPolicy: UNSPECIFIED_POLICY, IfNotPresent or Always. Unset
//     means IfNotPresent, except Always for an oci:// url with the tag
//     latest or no tag, and no digest or pin (as Istio and Kubernetes do).
//   - pluginConfig: any mapping; it reaches the filter as compact JSON with
//     sorted keys, at most MaxPluginConfigBytes (1 MiB) of it.
//   - phase: UNSPECIFIED_PHASE, AUTHN, AUTHZ or STATS; plugins run AUTHN,
//     AUTHZ, STATS, then unspecified (just before the router), by priority
//     (higher first, default 0), then by name.
//   - failStrategy: FAIL_CLOSE (default), FAIL_OPEN or FAIL_RELOAD, Envoy's
//     failure_policy FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD. With
//     FAIL_RELOAD a VM that failed at run time (a trap, a Go panic) is
//     replaced by a new one after a backoff (reload_config base_interval
//     1s), refusing requests meanwhile; a module that cannot be fetched or
//     started fails closed.
//   - vmConfig.env: names are C identifiers, unique; valueFrom is INLINE
//     (default) or HOST, and value may only be set with INLINE.
//   - match: the plugin applies to listeners on any listed port; an entry
//     without ports, or no match at all, means every listener. A port that
//     no listener selectable by the plugin uses is a warning. mode may be
//     UNDEFINED, SERVER or CLIENT_AND_SERVER: every wasmxds listener serves
//     downstream (inbound) traffic, so CLIENT (outbound) is rejected.
//   - match[].hosts and match[].paths (wasmxds.dev/v1alpha1 only; an error
//     under Istio's apiVersion) limit the plugin to routes:
//     match: [{hosts: [api.example.com], paths: [{prefix: /admin}]}]. hosts
//     are domains as a listener's hosts spell them, selecting the hosts
//     that list one; paths are {prefix: /p} or {exact: /p}. A route is
//     selected by an entry whose ports, hosts and paths all allow it (an
//     empty list allows all). The filter sits once in the chain and every
//     route it does not select turns it off (Envoy's per-route FilterConfig
//     disabled, keyed by the filter name wasmxds.<plugin>), so those
//     requests never reach the VM; requests no route takes get a 404 route
//     that turns it off too. A route only part of whose requests a path
//     selects (a prefix / and a plugin on /admin) is preceded by a copy of
//     itself for that path. A plugin that selects no route of any listener
//     it can reach is a warning naming it.
//   - type: UNSPECIFIED_PLUGIN_TYPE or HTTP (an HTTP filter on HTTP
//     listeners), or NETWORK (envoy.filters.network.wasm on TCP listeners,
//     before tcp_proxy; the module gets the connection's bytes through the
//     proxy-wasm network callbacks). Both kinds are delivered the same way
//     (ECDS by default), with the same phase and priority order, failure
//     strategy (a network RBAC filter stands in) and status. A NETWORK plugin
//     cannot have match hosts or paths.
//   - verificationKey: a PEM public key (cosign.pub from cosign
//     generate-key-pair), inline or as file:<path> relative to the spec's
//     directory (read when the spec is loaded). The module must be oci://,
//     and the manifest its reference resolves to must carry a cosign
//     signature made with the key (the sha256-<hex>.sig tag form, checked
//     against the registry alone, no transparency log); otherwise it is
//     refused and the plugin keeps its last good module.
//   - secretRefs: [{path, file}] fill values of pluginConfig from files
//     when the configuration is pushed, so secrets stay out of specs. path
//     is a dot-separated key path from the pluginConfig root (objects on
//     the way are created; one running through a non-object value is an
//     error; paths may not overlap); file is absolute or relative to the
//     spec's directory. The value is the file's content, one trailing
//     newline removed, as a JSON string. The catalog never reads the file:
//     the control plane does, watches it (a rotation pushes the new
//     config), and reports a missing or unreadable file as file:line of
//     the entry, keeping the last good config. Values never appear in the
//     IR, status, logs or metrics.
//   - rollout: {url, percent} (under either apiVersion) sends another
//     module to part of the nodes the plugin selects: a node runs
//     rollout.url when a stable hash of its node id and the plugin's name
//     falls within percent (0-100), the same on every replica, and url
//     otherwise. rollout.url is pulled like url (imagePullSecret,
//     verificationKey, Always for the latest tag). The control plane halts
//     a rollout whose module a chosen node refuses (chosen nodes go back to
//     url) until url or percent changes. A rollout at 0%, or naming url
//     itself (promotion is an edit of url), changes nothing.
//   - targetRef and targetRefs are rejected with the reason: there are no
//     Kubernetes Gateways or Services to target.
//
// # NodeAccess
//
// A wasmxds.dev/v1alpha1 NodeAccess grants node identities (the identity in
// a client certificate, when `serve --client-ca-file` requires one) the
// labels and node ids they may claim:
//
//	kind: NodeAccess
//	metadata: {name: team-b}
//	spec:
//	  principals: ["spiffe://example.org/team-b/*"]   # required: exact, or a prefix ending in *
//	  labels: {team: b}                               # labels these identities may claim
//	  nodeIDs: ["edge-*"]                             # optional: node.id patterns they may use
//
// '*' may only end a pattern. The control plane admits a node when the
// NodeAccess documents matching its identity together grant every label it
// claims and, if any of them lists nodeIDs, its node id.
//
// # Errors
//
// Every problem is a SpecError "file:line: message", with the line of the
// offending key or value. A document with any error is left out; the rest
// apply. Things that are valid but probably unintended are State.Warnings.
//
// Conflicts between documents (a duplicate name, two listeners that collide)
// are settled by age: the document in force longer stays and the newer one
// is reported and left out, so an edit elsewhere never takes down what
// already works. Editing a document keeps its age; renaming its file or
// name makes it new. Documents of the same age (all of them, in a one-shot
// Load) are ordered by file path, then line. A listener whose route names a
// missing cluster is reported at the route's cluster line; the version of it
// that was in force stays, or, when there was none whose clusters exist, it
// is left out whole. A cluster that was in force and is removed while a
// route still uses it stays in force, reported at that route, until no
// route does: remove or repoint the routes first (or in the same change). A file truncated to zero bytes keeps its last good
// documents with a warning (an in-place save caught between truncate and
// write); delete the file, or leave only comments, to remove its specs. See
// Watch for how a bad edit to a file is handled.
package catalog

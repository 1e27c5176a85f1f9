// Package catalog reads declarative spec files (Listener, Cluster, WasmPlugin,
// TrafficExtension, NodeAccess, and the older FilterDeployment,
// ASMFilterDeployment and EnvoyFilter) from a directory, validates them and produces the desired state as a plain
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
// and '.', at most 253 characters); names are unique per kind, and every
// kind that becomes a plugin (WasmPlugin under both API versions,
// TrafficExtension, FilterDeployment, ASMFilterDeployment, EnvoyFilter)
// shares one set of names. metadata.namespace, labels
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
//     sorted keys, at most MaxPluginConfigBytes (1 MiB) of it. Under
//     wasmxds.dev/v1alpha1 (only) it may be a string instead, which reaches
//     the filter as written.
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
//     vmConfig.vmId (wasmxds.dev/v1alpha1 only) leads the Envoy vm_id in
//     place of the plugin's name; plugins with one vmId and one module
//     share a VM.
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
//   - rollout.analysis: {interval (30s), minRequests (20), maxErrorRate
//     (0.05)}, each optional, judges the rollout on what Envoys report:
//     every interval with at least minRequests on the chosen nodes'
//     listeners carrying the plugin, a 5xx rate above maxErrorRate and
//     above the rate of the nodes running url, or a VM reload on a chosen
//     node, halts it. interval is 1s-1h; maxErrorRate is at least 0 and
//     below 1.
//   - rollout.steps: [10, 50, 100], increasing percentages (1-100) that
//     need an analysis: the rollout starts at the first (percent may be
//     left out, or must equal it) and moves to the next after each healthy
//     interval. Edits of steps re-arm a halted rollout, as percent does.
//   - targetRef and targetRefs are rejected with the reason: there are no
//     Kubernetes Gateways or Services to target.
//
// # TrafficExtension
//
// kind TrafficExtension (extensions.istio.io/v1alpha1, Istio 1.30) has
// WasmPlugin's selector, targetRefs (rejected), phase, priority and match,
// with phase spelled UNSPECIFIED, AUTHN, AUTHZ or STATS, and exactly one of:
//
//	wasm:                        # WasmPlugin's module fields, same rules
//	  url: oci://registry:5000/filters/add-header:v1
//	  sha256: ""
//	  imagePullPolicy: IfNotPresent
//	  imagePullSecret: ""
//	  pluginName: ""
//	  pluginConfig: {header: x-wasm}
//	  failStrategy: FAIL_CLOSE
//	  vmConfig: {env: [{name: K, value: V}]}
//	  type: HTTP
//	lua:
//	  inlineCode: |              # required, at most MaxLuaBytes (64 KiB)
//	    function envoy_on_response(response_handle)
//	      response_handle:headers():add("x-lua", "tagged")
//	    end
//
// Lua code must define envoy_on_request or envoy_on_response. It becomes
// Envoy's Lua HTTP filter (envoy.filters.http.lua) at the place in the HTTP
// filter chain a Wasm plugin of the same phase and priority takes, inline
// in the listener whatever the delivery: there is no module to fetch, so
// the plugin is ready at once, and an edit of the code is a listener
// update. Code Envoy cannot compile is refused by Envoy (a NACK in
// status) and the listener it runs stays.
//
// # FilterDeployment, ASMFilterDeployment and EnvoyFilter
//
// The older ways to put Wasm filters on Envoy are read unchanged, each
// document becoming one plugin in the unspecified phase (just before the
// router) whose filter receives the configuration it received before.
//
// wasme.io/v1 FilterDeployment:
//
//	spec:
//	  deployment:
//	    istio: {kind: Deployment, labels: {app: details}, istioNamespace: istio-system}
//	  filter:
//	    id: myfilter                     # leads the vm_id, as vmConfig.vmId
//	    image: webassemblyhub.io/user/filter:v1   # an OCI reference without a scheme
//	    config: {"@type": type.googleapis.com/google.protobuf.StringValue, value: world}
//	    rootID: add_header               # pluginName
//	    imagePullOptions: {pullSecret: "", plainHttp: false, insecureSkipVerify: false}
//	    patchContext: inbound
//
// istio.alibabacloud.com/v1beta1 ASMFilterDeployment:
//
//	spec:
//	  workload: {kind: Deployment, labels: {app: details}}
//	  filter:
//	    id: details-v1-filter.default
//	    image: registry.cn-hangzhou.aliyuncs.com/ns/filter:v1
//	    parameters: '{"name":"hello"}'   # delivered as written
//	    rootID: my_root_id
//	    imagePullOptions: {pullSecret: registry.cn-hangzhou.aliyuncs.com}
//
// networking.istio.io/v1alpha3 EnvoyFilter with one patch:
//
//	spec:
//	  workloadSelector: {labels: {app: details}}
//	  priority: 0                        # the plugin's priority is its negation
//	  configPatches:
//	  - applyTo: HTTP_FILTER
//	    match:
//	      context: SIDECAR_INBOUND       # or GATEWAY, ANY
//	      listener:
//	        portNumber: 9080             # only listeners on this port
//	        filterChain:
//	          filter:
//	            name: envoy.http_connection_manager   # or envoy.filters.network.http_connection_manager
//	            subFilter: {name: envoy.router}         # or envoy.filters.http.router
//	    patch:
//	      operation: INSERT_BEFORE
//	      value:
//	        name: envoy.filters.http.wasm
//	        config:                      # or typed_config: the v3 Wasm, bare or in a TypedStruct
//	          config:                    # Envoy's PluginConfig, camelCase or snake_case
//	            rootId: add_header
//	            configuration: world     # a string, or an Any as wasme's config
//	            vmConfig:
//	              vmId: myfilter
//	              runtime: envoy.wasm.runtime.v8
//	              code: {local: {filename: filter.wasm}}   # or remote: {http_uri: {uri}, sha256}
//
// Rules:
//
//   - labels select Envoys as selector.matchLabels does; empty or absent
//     labels select every Envoy.
//   - image is parsed as a WasmPlugin url and must be an OCI reference;
//     the pull policy is IfNotPresent, Always for the latest tag.
//     pullSecret is imagePullSecret. plainHttp is the server's
//     --insecure-registry setting for the image's registry (loopback
//     registries always are plain HTTP): a warning names the flag when
//     the registry is not loopback. insecureSkipVerify is refused, since
//     registry certificates are always verified, except where the
//     registry is reached over plain HTTP anyway (a warning).
//   - config (wasme) and configuration (EnvoyFilter) are a plain string
//     or a google.protobuf.Any: a StringValue or a plain string reaches
//     the filter as written, a BytesValue as its bytes (which must be
//     UTF-8), a Struct as compact JSON with sorted keys; other types are
//     refused. ASM's parameters reach the filter as written.
//   - code.local.filename is a file: module, relative to the manifest's
//     directory unless absolute; code.remote is an http(s) module pinned
//     by its sha256. fail_open and failure_policy (FAIL_CLOSED, FAIL_OPEN)
//     set the fail strategy; environment_variables set vmConfig.env.
//   - Warnings, the meaning kept: deployment.istio.kind, workload.kind,
//     istioNamespace: istio-system, allow_precompiled, nack_on_code_cache_miss,
//     http_uri.cluster and timeout, retry_policy, and the filter's
//     config.name (the plugin is named after metadata.name).
//   - Refused with the reason: patchContext outbound and context
//     SIDECAR_OUTBOUND (listeners only serve inbound traffic), another
//     istioNamespace, match.proxy, listener.name and portName, filterChain
//     matches other than the HTTP connection manager and the router,
//     applyTo other than HTTP_FILTER, operation other than INSERT_BEFORE,
//     filterClass, more than one patch, a runtime other than V8,
//     vm_config.configuration, inline code, capability_restriction_config,
//     failure_policy FAIL_RELOAD, targetRefs.
//
// Convert writes such documents as the wasmxds.dev/v1alpha1 WasmPlugins
// that serve Envoy the same configuration.
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
// apply. Things that are valid but probably unintended, or fields that are
// accepted but change nothing here, are State.Warnings.
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

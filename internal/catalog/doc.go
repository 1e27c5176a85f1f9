// Package catalog reads declarative spec files (Listener, Cluster, WasmPlugin,
// TrafficExtension, NodeAccess, and the older FilterDeployment,
// ASMFilterDeployment and EnvoyFilter) from a directory, validates them and
// produces the desired state as a plain intermediate representation (IR) with
// no Envoy types. It never touches the network.
//
// The spec reference — every kind, field and rule, and how conflicts between
// documents are settled — is docs/spec.md at the repository root. It is the
// only copy: the package's tests load every YAML example in it and check that
// it names every field this package reads (TestSpecDocExamplesLoad,
// TestSpecDocNamesEveryField).
//
// Every problem is a SpecError "file:line: message", with the line of the
// offending key or value; a document with any error is left out and the rest
// apply. Things that are valid but probably unintended are State.Warnings.
// See Watch for how a bad edit to a file is handled.
package catalog

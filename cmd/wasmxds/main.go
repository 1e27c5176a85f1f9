// Command wasmxds is a standalone xDS (ADS) control plane that delivers Wasm
// filters to fleets of Envoy proxies.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var exit exitError
		if asExit(err, &exit) {
			os.Exit(exit.code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

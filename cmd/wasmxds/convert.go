package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

func newConvertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "convert FILE...",
		Short: "Print wasme, ASM and EnvoyFilter manifests (and Wasm TrafficExtensions) as WasmPlugins",
		Long: "convert prints each FILE with every FilterDeployment (wasme.io/v1), ASMFilterDeployment\n" +
			"(istio.alibabacloud.com/v1beta1), EnvoyFilter (networking.istio.io/v1alpha3) and Wasm\n" +
			"TrafficExtension rewritten as the wasmxds.dev/v1alpha1 WasmPlugin that serves Envoy the same\n" +
			"configuration; other documents are printed as they are. What wasmxds cannot honour is\n" +
			"left out and named in a \"# refused:\" comment above the document, warnings in \"# warning:\".\n" +
			"Files are separated by ---. The count of refusals goes to stderr; the exit status is 0.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConvert(cmd.OutOrStdout(), cmd.ErrOrStderr(), args)
		},
	}
}

func runConvert(out, errOut io.Writer, files []string) error {
	refused := 0
	for i, f := range files {
		c, err := catalog.Convert(f)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(out, "---")
		}
		fmt.Fprintf(out, "# wasmxds convert %s\n", f)
		if _, err := out.Write(c.YAML); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
		refused += c.Refused
	}
	if refused > 0 {
		fmt.Fprintf(errOut, "convert: %s could not be converted; see the # refused: comments\n", count(refused, "field"))
	}
	return nil
}

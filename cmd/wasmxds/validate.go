package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check the spec files in DIR (default ./configs) and list every problem as file:line: message",
		Long: "validate loads every spec under DIR as serve would and prints each problem as\n" +
			"DIR/path/to/file.yaml:LINE: message, then exits 1; with no problem it prints a\n" +
			"one-line summary and exits 0. Warnings are printed but do not fail validation.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "configs"
			if len(args) == 1 {
				dir = args[0]
			}
			return runValidate(cmd.OutOrStdout(), dir)
		},
	}
}

func runValidate(out io.Writer, dir string) error {
	st, err := catalog.Load(dir)
	if err != nil {
		return err
	}
	// Paths joined to DIR as typed, so they open from the shell's cwd.
	for _, e := range st.Errors {
		fmt.Fprintf(out, "%s:%d: %s\n", filepath.Join(dir, e.File), e.Line, e.Message)
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(out, "%s:%d: warning: %s\n", filepath.Join(dir, w.File), w.Line, w.Message)
	}
	fmt.Fprintf(out, "%s: %s, %s, %s, %s, %s\n", dir, count(len(st.Listeners), "listener"),
		count(len(st.Clusters), "cluster"), count(len(st.Plugins), "plugin"),
		count(len(st.Errors), "error"), count(len(st.Warnings), "warning"))
	if len(st.Errors) > 0 {
		return exitError{code: 1}
	}
	return nil
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

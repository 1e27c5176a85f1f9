package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var updateCLIDoc = flag.Bool("update", false, "rewrite docs/cli.md from the commands' help")

// cliDocPath is the CLI reference, generated from the command tree.
var cliDocPath = filepath.Join("..", "..", "docs", "cli.md")

// TestCLIReference checks that docs/cli.md is what the commands' own help
// says: every command, its usage and description, and every flag with its
// default and help text. `go test ./cmd/wasmxds -run TestCLIReference
// -update` rewrites it.
func TestCLIReference(t *testing.T) {
	got := renderCLIDoc(newRootCmd())
	if *updateCLIDoc {
		if err := os.WriteFile(cliDocPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(cliDocPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the commands' help says; run\n\tgo test ./cmd/wasmxds -run TestCLIReference -update\n"+
			"first difference: %s", cliDocPath, firstDiff(string(want), string(got)))
	}
}

// TestCLIReferenceNamesEveryFlag checks the rendered reference against the
// flag sets directly, so that a renderer that dropped flags cannot pass.
func TestCLIReferenceNamesEveryFlag(t *testing.T) {
	doc := string(renderCLIDoc(newRootCmd()))
	n := 0
	for _, c := range newRootCmd().Commands() {
		if !strings.Contains(doc, "\n## wasmxds "+c.Name()+"\n") {
			t.Errorf("no section for wasmxds %s", c.Name())
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			n++
			if !strings.Contains(doc, "`--"+f.Name+"`") || !strings.Contains(doc, mdCell(f.Usage)) {
				t.Errorf("wasmxds %s --%s: flag or its help text missing", c.Name(), f.Name)
			}
		})
	}
	if n < 40 {
		t.Errorf("only %d flags seen", n)
	}
}

func renderCLIDoc(root *cobra.Command) []byte {
	var b bytes.Buffer
	b.WriteString("# CLI reference\n\n")
	b.WriteString("<!-- Generated from the commands' help: go test ./cmd/wasmxds -run TestCLIReference -update -->\n\n")
	b.WriteString("`wasmxds <command> --help` prints the same. ")
	b.WriteString("The HTTP endpoints of `serve` are in [observability.md](observability.md).\n\n")
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		fmt.Fprintf(&b, "- [`wasmxds %s`](#wasmxds-%s): %s\n", c.Name(), c.Name(), c.Short)
	}
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		fmt.Fprintf(&b, "\n## wasmxds %s\n\n%s.\n\n```text\nwasmxds %s\n", c.Name(), c.Short, c.Use)
		if c.Long != "" {
			fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(c.Long))
		}
		b.WriteString("```\n")
		var rows []string
		c.Flags().VisitAll(func(f *pflag.Flag) {
			name := "`--" + f.Name + "`"
			if f.Shorthand != "" {
				name = "`-" + f.Shorthand + "`, " + name
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s |", name, flagDefault(c, f), mdCell(f.Usage)))
		})
		if len(rows) > 0 {
			b.WriteString("\n| flag | default | |\n|---|---|---|\n")
			b.WriteString(strings.Join(rows, "\n"))
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// flagDefault is a flag's default as the reference shows it: the same on
// every machine.
func flagDefault(c *cobra.Command, f *pflag.Flag) string {
	if f.Name == "cache-dir" && f.DefValue == defaultCacheDir() {
		return "`$XDG_CACHE_HOME/wasmxds` (`~/.cache/wasmxds`)"
	}
	if _, required := f.Annotations[cobra.BashCompOneRequiredFlag]; required {
		return "required"
	}
	switch f.DefValue {
	case "", "[]", "false":
		return ""
	}
	return "`" + f.DefValue + "`"
}

// mdCell makes text safe in a markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "<", "&lt;")
	return strings.ReplaceAll(s, ">", "&gt;")
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d\n\thave: %s\n\twant: %s", i+1, x, y)
		}
	}
	return "none"
}

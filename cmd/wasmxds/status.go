package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "not implemented yet",
		RunE:  func(*cobra.Command, []string) error { return errors.New("status: not implemented") },
	}
}

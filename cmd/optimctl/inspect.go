package main

import (
	"github.com/optimctl/optimctl/pkg/inspect"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newInspectCmd) }

// inspectOptions is what `optimctl inspect` runs with.
type inspectOptions struct {
	Model string
}

func newInspectCmd(g *globals) *cobra.Command {
	o := &inspectOptions{}
	return &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Show operators, parameters, dtypes, sizes and sparsity of an ONNX model or safetensors checkpoint",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Model = args[0]
			r, err := inspect.File(o.Model)
			if err != nil {
				return err
			}
			if g.JSON {
				return g.emitJSON(r)
			}
			return inspect.WriteText(g.stdout, r, g.Verbose)
		},
	}
}

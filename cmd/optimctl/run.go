package main

import (
	"fmt"
	"strings"

	"github.com/optimctl/optimctl/pkg/recipe"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newRunCmd) }

type runOptions struct {
	Recipe string
	recipe.RunOptions
}

func newRunCmd(g *globals) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run RECIPE.yaml",
		Short: "Run a recipe: optimize, quantize, prune, calibrate, validate, bench, build-trt … as one CI pipeline with gates",
		Long: `Runs the steps of a YAML recipe in order. Each step's options are the flags of the command
of the same name. Steps whose inputs and options are unchanged since the last run are skipped
(content hashes in <workdir>/state.json). Writes <workdir>/report.json and summary.md; exits
with code 3 when a gate fails. --dry-run checks the recipe and prints the plan (with the
trtexec command of build-trt steps) without loading ONNX Runtime. See docs/recipes.md.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Recipe, o.Log = args[0], g.log
			if g.stderrIsTerminal() {
				o.Progress = func(what string) func(done, total int) { return newProgress(g, what, -1) }
			}
			r, err := recipe.Parse(o.Recipe)
			if err != nil {
				return err
			}
			if !o.DryRun {
				if err := runtime.Init(g.ORTLib); err != nil {
					return err
				}
			}
			rep, err := r.Run(cmd.Context(), o.RunOptions)
			if err != nil {
				return err
			}
			if g.JSON {
				if err := g.emitJSON(rep); err != nil {
					return err
				}
			} else {
				writeRunText(g, rep)
			}
			if !rep.Passed {
				return gateError{fmt.Sprintf("recipe gate failed: %s", rep.FailedGates[0])}
			}
			return nil
		},
	}
	cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
	}
	f := cmd.Flags()
	f.StringVar(&o.Only, "only", "", "run only this step")
	cmd.RegisterFlagCompletionFunc("only", func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		return recipeStepNames(args), cobra.ShellCompDirectiveNoFileComp
	})
	f.BoolVar(&o.DryRun, "dry-run", false, "check the recipe and print the plan without running anything")
	f.BoolVar(&o.Force, "force", false, "run every step even when its inputs are unchanged")
	return cmd
}

func writeRunText(g *globals, rep *recipe.Report) {
	width := 12
	for _, s := range rep.Steps {
		width = max(width, len(s.Name))
	}
	for _, s := range rep.Steps {
		status := "ok"
		switch {
		case rep.DryRun:
			status = "planned"
		case !s.Passed:
			status = "GATE FAILED: " + strings.Join(s.FailedGates, "; ")
		case s.Skipped:
			status = "unchanged, skipped"
		}
		fmt.Fprintf(g.stdout, "%-*s %-10s %6.2fs  %s", width, s.Name, s.Kind, s.Seconds, status)
		if s.Output != "" {
			fmt.Fprintf(g.stdout, "  → %s", s.Output)
		}
		fmt.Fprintln(g.stdout)
		if c, ok := s.Report.(interface{ TrtexecCommand() string }); ok && rep.DryRun {
			fmt.Fprintf(g.stdout, "%-*s %s\n", width, "", c.TrtexecCommand())
		}
	}
	if !rep.DryRun {
		fmt.Fprintf(g.stdout, "report: %s/report.json, summary: %s/summary.md\n", rep.Workdir, rep.Workdir)
	}
}

// recipeStepNames completes --only with the steps of the recipe named on the command line.
func recipeStepNames(args []string) []string {
	if len(args) == 0 {
		return nil
	}
	r, err := recipe.Parse(args[0])
	if err != nil {
		return nil
	}
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Name+"\t"+s.Kind)
	}
	return names
}

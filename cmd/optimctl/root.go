package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes of the command-line contract.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
	exitGate  = 3
)

// globals are the flags every command shares.
type globals struct {
	JSON    bool
	ORTLib  string
	Quiet   bool
	Verbose bool
	stdout  io.Writer
	stderr  io.Writer
	log     *slog.Logger
}

// usageError marks a bad command line (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// gateError marks a run whose output was written but a quality gate failed (exit 3).
type gateError struct{ msg string }

func (e gateError) Error() string { return e.msg }

func newRoot(ctx context.Context, g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "optimctl",
		Short:         "Optimize, quantize and prune ONNX/safetensors models, and prove they still answer the same",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelInfo
			switch {
			case g.Quiet:
				level = slog.LevelError
			case g.Verbose:
				level = slog.LevelDebug
			}
			g.log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
		},
	}
	root.SetContext(ctx)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	pf := root.PersistentFlags()
	pf.BoolVar(&g.JSON, "json", false, "print one JSON report on stdout and nothing else there")
	pf.StringVar(&g.ORTLib, "ort-lib", os.Getenv("OPTIMCTL_ORT_LIB"), "path to libonnxruntime (default: the copy installed by make setup; env OPTIMCTL_ORT_LIB)")
	pf.BoolVarP(&g.Quiet, "quiet", "q", false, "only errors on stderr")
	pf.BoolVarP(&g.Verbose, "verbose", "v", false, "more detail on stderr and in text reports")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	for _, add := range commands {
		root.AddCommand(add(g))
	}
	return root
}

// commands registers each subcommand's constructor (one file per command adds itself).
var commands []func(*globals) *cobra.Command

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, log: slog.New(slog.NewTextHandler(stderr, nil))}
	root := newRoot(ctx, g)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "optimctl: %s\n", msg)
	var ue usageError
	var ge gateError
	switch {
	case errors.As(err, &ge):
		return exitGate
	case errors.As(err, &ue), isCobraUsage(err):
		return exitUsage
	default:
		return exitFail
	}
}

// isCobraUsage recognises cobra's own argument errors, which are not typed.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "flag needs an argument", "invalid argument", "required flag"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// exactArgs is cobra.ExactArgs returning a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %d argument(s), got %d (see `optimctl %s --help`)", cmd.Name(), n, len(args), cmd.Name())
		}
		return nil
	}
}

// emitJSON writes v as indented JSON on stdout.
func (g *globals) emitJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stderrIsTerminal decides whether progress bars are drawn.
func (g *globals) stderrIsTerminal() bool {
	f, ok := g.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && !g.Quiet
}

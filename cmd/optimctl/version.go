package main

import (
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newVersionCmd) }

// version is set at link time (-ldflags "-X main.version=…"); otherwise the module version.
var version = ""

type versionReport struct {
	Version     string `json:"version"`
	Go          string `json:"go"`
	ORTVersion  string `json:"onnxruntime_version,omitempty"`
	ORTLibrary  string `json:"onnxruntime_library,omitempty"`
	ORTError    string `json:"onnxruntime_error,omitempty"`
	TensorRTTag bool   `json:"tensorrt_build"`
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print optimctl's version and the ONNX Runtime library it loads",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version
			if v == "" {
				if bi, ok := debug.ReadBuildInfo(); ok {
					v = bi.Main.Version
					for _, s := range bi.Settings {
						if s.Key == "vcs.revision" && len(s.Value) >= 12 {
							v += " (" + s.Value[:12] + ")"
						}
					}
				}
			}
			r := versionReport{Version: v, Go: goruntime.Version(), TensorRTTag: tensorrtBuild}
			if err := runtime.Init(g.ORTLib); err != nil {
				r.ORTError = err.Error()
			} else {
				r.ORTVersion, r.ORTLibrary = runtime.Version(), runtime.LibraryPath()
			}
			if g.JSON {
				return g.emitJSON(r)
			}
			fmt.Fprintf(g.stdout, "optimctl %s (%s)\n", r.Version, r.Go)
			if r.ORTError != "" {
				fmt.Fprintf(g.stdout, "ONNX Runtime: not loaded: %s\n", r.ORTError)
			} else {
				fmt.Fprintf(g.stdout, "ONNX Runtime %s from %s\n", r.ORTVersion, r.ORTLibrary)
			}
			if r.TensorRTTag {
				fmt.Fprintln(g.stdout, "TensorRT: built in (tag tensorrt)")
			} else {
				fmt.Fprintln(g.stdout, "TensorRT: not built in (rebuild with `make build TAGS=tensorrt`)")
			}
			return nil
		},
	}
}

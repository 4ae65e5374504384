package recipe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/fsutil"
)

// RunOptions controls a run.
type RunOptions struct {
	Only   string // run just this step (its inputs must exist from an earlier run)
	DryRun bool   // print the plan, run nothing
	Force  bool   // ignore the state file: run every step
	Log    *slog.Logger
	// Progress, when set, makes a progress callback for a long phase of a step
	// (calibration, validation samples); nil draws nothing.
	Progress func(what string) func(done, total int)
}

// StepReport is one step's outcome in the combined report.
type StepReport struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Input       string   `json:"input,omitempty"`
	Output      string   `json:"output,omitempty"`
	Skipped     bool     `json:"skipped"` // inputs and options unchanged since the last run
	Seconds     float64  `json:"seconds"`
	Passed      bool     `json:"passed"`
	FailedGates []string `json:"failed_gates"`
	Report      any      `json:"report,omitempty"`
}

// Report is the combined report of a run.
type Report struct {
	Recipe      string        `json:"recipe"`
	Model       string        `json:"model"`
	Workdir     string        `json:"workdir"`
	Steps       []*StepReport `json:"steps"`
	Passed      bool          `json:"passed"`
	FailedGates []string      `json:"failed_gates"`
	Seconds     float64       `json:"seconds"`
	DryRun      bool          `json:"dry_run,omitempty"`
}

// stateEntry remembers a step's last successful run so an unchanged step is skipped.
type stateEntry struct {
	Key       string          `json:"key"`
	OutputSHA string          `json:"output_sha,omitempty"`
	Report    json.RawMessage `json:"report,omitempty"`
	Failed    []string        `json:"failed_gates,omitempty"`
}

const stateFile = "state.json"

// Run executes the recipe's steps in order and writes report.json and summary.md to the
// workdir. A failed gate does not stop later steps; an error does.
func (r *Recipe) Run(ctx context.Context, o RunOptions) (*Report, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	work := joinIfRel(r.Dir, r.Workdir)
	model := joinIfRel(r.Dir, r.Model)
	if _, err := os.Stat(model); err != nil {
		return nil, fmt.Errorf("%s: model: %w", r.Path, err)
	}
	rep := &Report{Recipe: r.Path, Model: model, Workdir: work, FailedGates: []string{}, DryRun: o.DryRun}
	if o.Only != "" && r.step(o.Only) == nil {
		return nil, fmt.Errorf("%s: no step named %q", r.Path, o.Only)
	}
	if !o.DryRun {
		if err := os.MkdirAll(work, 0o755); err != nil {
			return nil, err
		}
	}
	state := map[string]stateEntry{}
	if b, err := os.ReadFile(filepath.Join(work, stateFile)); err == nil && !o.Force {
		json.Unmarshal(b, &state) // a corrupt state file only costs a full run
	}
	outputs := map[string]string{"model": model}
	prev := model
	resolve := func(s string) string {
		if p, ok := outputs[s]; ok {
			return p
		}
		return joinIfRel(r.Dir, s)
	}
	for _, s := range r.Steps {
		k := kinds[s.Kind]
		opts, err := k.decode(&s.opts, r.Path)
		if err != nil {
			return nil, err
		}
		input := prev
		if s.Input != "" {
			input = resolve(s.Input)
		}
		ext, isModel := k.output(opts)
		output := ""
		if ext != "" || s.Output != "" {
			output = filepath.Join(work, s.Name+ext)
			if s.Output != "" {
				output = joinIfRel(r.Dir, s.Output)
			}
			outputs[s.Name] = output
		}
		sr := &StepReport{Name: s.Name, Kind: s.Kind, Input: input, Output: output, FailedGates: []string{}}
		next := func() {
			if isModel && output != "" {
				prev = output
			}
		}
		if o.Only != "" && s.Name != o.Only {
			next()
			continue
		}
		rep.Steps = append(rep.Steps, sr)
		resolvePaths(k.files(opts), resolve)
		if k.paths != nil {
			resolvePaths(k.paths(opts), resolve)
		}
		if o.DryRun {
			sr.Passed = true
			if k.plan != nil {
				if sr.Report, err = k.plan(&stepEnv{input: input, output: output, work: work, name: s.Name, resolve: resolve}, opts); err != nil {
					return nil, fmt.Errorf("%s:%d: step %q (%s): %w", r.Path, s.Line, s.Name, s.Kind, err)
				}
			}
			next()
			continue
		}
		key, err := stepKey(s, input, opts, k.files(opts))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: step %q: %w", r.Path, s.Line, s.Name, err)
		}
		if st, ok := state[s.Name]; ok && st.Key == key && outputMatches(output, st.OutputSHA) {
			sr.Skipped, sr.Report, sr.FailedGates = true, st.Report, append([]string{}, st.Failed...)
			o.Log.Info("step unchanged, skipped", "step", s.Name)
		} else {
			o.Log.Info("running step", "step", s.Name, "kind", s.Kind)
			t0 := time.Now()
			env := &stepEnv{input: input, output: output, work: work, name: s.Name, resolve: resolve}
			if o.Progress != nil {
				env.progress = func(what string) func(done, total int) { return o.Progress(s.Name + ": " + what) }
			}
			res, err := k.run(ctx, env, opts)
			sr.Seconds = time.Since(t0).Seconds()
			if err != nil {
				return nil, fmt.Errorf("%s:%d: step %q (%s): %w", r.Path, s.Line, s.Name, s.Kind, err)
			}
			o.Log.Debug("step done", "step", s.Name, "seconds", sr.Seconds)
			sr.Report = res.report
			sr.FailedGates = append(sr.FailedGates, res.failed...)
			if s.MaxSizeBytes > 0 && output != "" {
				if size, err := pathSize(output); err == nil && size > s.MaxSizeBytes {
					sr.FailedGates = append(sr.FailedGates, fmt.Sprintf("max_size_bytes: %s is %d bytes > %d", filepath.Base(output), size, s.MaxSizeBytes))
				}
			}
			raw, _ := json.Marshal(res.report)
			sum := ""
			if output != "" {
				sum, _ = fingerprint(output)
			}
			state[s.Name] = stateEntry{Key: key, OutputSHA: sum, Report: raw, Failed: sr.FailedGates}
			if err := saveState(work, state); err != nil {
				return nil, err
			}
		}
		sr.Passed = len(sr.FailedGates) == 0
		for _, g := range sr.FailedGates {
			rep.FailedGates = append(rep.FailedGates, s.Name+": "+g)
		}
		next()
	}
	rep.Passed = len(rep.FailedGates) == 0
	rep.Seconds = time.Since(start).Seconds()
	if o.DryRun {
		return rep, nil
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(work, "report.json"), append(b, '\n')); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(work, "summary.md"), []byte(Markdown(rep))); err != nil {
		return nil, err
	}
	return rep, nil
}

func (r *Recipe) step(name string) *Step {
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// stepKey hashes what decides a step's result: its kind and options, the content of its
// input model and of every file option, and a fingerprint of data folders.
func stepKey(s *Step, input string, opts any, files []*string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "optimctl-step/1\x00%s\x00", s.Kind)
	b, err := json.Marshal(opts)
	if err != nil {
		return "", err
	}
	h.Write(b)
	paths := []string{input}
	for _, p := range files {
		paths = append(paths, *p)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		fp, err := fingerprint(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%s\x00%s", p, fp)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fingerprint is a file's sha256 (and its .data sibling's), or for a folder the names,
// sizes and modification times of everything in it (hashing a dataset would cost more
// than the step).
func fingerprint(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		sum, err := fileSHA(p)
		if ext, err2 := fileSHA(p + ".data"); err2 == nil && ext != "" {
			sum += "+" + ext
		}
		return sum, err
	}
	h := sha256.New()
	err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			fmt.Fprintf(h, "%s\x00%d\x00%d\n", strings.TrimPrefix(q, p), info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

func fileSHA(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func outputMatches(output, sum string) bool {
	if output == "" {
		return true
	}
	got, err := fingerprint(output)
	return err == nil && got == sum
}

// pathSize is a file's size (with its .data sibling), or the total size of a folder.
func pathSize(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			n += info.Size()
		}
		return nil
	})
	if st, err2 := os.Stat(p + ".data"); err2 == nil && !st.IsDir() {
		n += st.Size()
	}
	return n, err
}

func saveState(work string, state map[string]stateEntry) error {
	b, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(work, stateFile), b)
}

// Markdown renders the combined report as a CI summary.
func Markdown(r *Report) string {
	var b strings.Builder
	verdict := "✅ passed"
	if !r.Passed {
		verdict = "❌ failed"
	}
	fmt.Fprintf(&b, "## optimctl run `%s`: %s\n\nModel `%s`, %.1f s.\n\n| step | kind | output | time (s) | result |\n|---|---|---|---|---|\n", filepath.Base(r.Recipe), verdict, r.Model, r.Seconds)
	for _, s := range r.Steps {
		res := "passed"
		switch {
		case !s.Passed:
			res = "**gate failed**: " + strings.Join(s.FailedGates, "; ")
		case s.Skipped:
			res = "unchanged (skipped)"
		}
		out := s.Output
		if out != "" {
			out = "`" + filepath.Base(out) + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s |\n", s.Name, s.Kind, out, s.Seconds, res)
	}
	return b.String()
}

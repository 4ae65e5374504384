// Package recipe runs optimctl's steps (optimize, quantize, prune, calibrate, validate,
// bench, build-trt) as one CI pipeline described in YAML. A step's options are the same
// structs the commands fill from flags, so a recipe and the command line never drift
// apart. Decoding is strict: an unknown key or a bad value is an error with its line.
package recipe

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Recipe is a parsed recipe file.
type Recipe struct {
	Path    string
	Dir     string // paths in the recipe are relative to its folder
	Model   string // the pipeline's input model
	Workdir string // where step outputs, the state file and the reports go
	Steps   []*Step
}

// Step is one named step of a recipe.
type Step struct {
	Name string
	Kind string
	// Input is the model the step reads: a step name, "model", or a path; "" means the
	// previous model-producing step's output (or the recipe's model).
	Input string
	// Output is where a model-producing step writes; "" means <workdir>/<name>.<ext>.
	Output string
	// MaxSizeBytes is a gate on the size of the step's output model.
	MaxSizeBytes int64
	Line         int
	opts         yaml.Node
}

type fileShape struct {
	Version int         `yaml:"version"`
	Model   string      `yaml:"model"`
	Workdir string      `yaml:"workdir"`
	Steps   []yaml.Node `yaml:"steps"`
}

// Parse reads and checks a recipe: known keys only, every step of a known kind with
// options that decode, unique names, inputs that name earlier steps.
func Parse(path string) (*Recipe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseBytes(b, path)
}

// ParseBytes parses recipe text; path names it in errors and anchors relative paths.
func ParseBytes(b []byte, path string) (*Recipe, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty recipe", path)
	}
	doc := root.Content[0]
	if err := expandEnv(doc, path); err != nil {
		return nil, err
	}
	var f fileShape
	if err := strictDecode(doc, &f, path, "recipe"); err != nil {
		return nil, err
	}
	if f.Version > 1 {
		return nil, fmt.Errorf("%s:%d: recipe version %d is newer than this optimctl understands (1)", path, doc.Line, f.Version)
	}
	r := &Recipe{Path: path, Dir: filepath.Dir(path), Model: f.Model, Workdir: f.Workdir}
	if r.Model == "" {
		return nil, fmt.Errorf("%s: `model:` is required (the pipeline's input model)", path)
	}
	if r.Workdir == "" {
		r.Workdir = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + ".out"
	}
	if len(f.Steps) == 0 {
		return nil, fmt.Errorf("%s: no steps", path)
	}
	seen := map[string]bool{"model": true}
	for i := range f.Steps {
		s, err := parseStep(&f.Steps[i], path)
		if err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%s:%d: step name %q is used twice (or is reserved)", path, s.Line, s.Name)
		}
		if s.Input != "" && !seen[s.Input] && !looksLikePath(s.Input) {
			return nil, fmt.Errorf("%s:%d: step %q: input %q is not an earlier step, \"model\", or a file path", path, s.Line, s.Name, s.Input)
		}
		seen[s.Name] = true
		r.Steps = append(r.Steps, s)
	}
	return r, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func parseStep(n *yaml.Node, path string) (*Step, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: a step must be a mapping (name: …, <kind>: {options})", path, n.Line)
	}
	s := &Step{Line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch key := k.Value; key {
		case "name", "input", "output":
			if v.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s:%d: %s must be a string", path, v.Line, key)
			}
			switch key {
			case "name":
				s.Name = v.Value
			case "input":
				s.Input = v.Value
			case "output":
				s.Output = v.Value
			}
		case "max_size_bytes":
			if err := v.Decode(&s.MaxSizeBytes); err != nil {
				return nil, fmt.Errorf("%s:%d: max_size_bytes: %v", path, v.Line, err)
			}
		default:
			if _, ok := kinds[key]; !ok {
				return nil, fmt.Errorf("%s:%d: unknown key %q in a step (want name, input, output, max_size_bytes and one of %s)", path, k.Line, key, strings.Join(kindNames(), ", "))
			}
			if s.Kind != "" {
				return nil, fmt.Errorf("%s:%d: step has two kinds, %s and %s", path, k.Line, s.Kind, key)
			}
			s.Kind, s.opts = key, *v
		}
	}
	if s.Kind == "" {
		return nil, fmt.Errorf("%s:%d: step has no kind (one of %s)", path, n.Line, strings.Join(kindNames(), ", "))
	}
	if s.Name == "" {
		s.Name = s.Kind
	}
	if !nameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("%s:%d: step name %q: use letters, digits, '.', '_' and '-'", path, s.Line, s.Name)
	}
	// Decode and check now so that a bad option fails before anything runs.
	k := kinds[s.Kind]
	opts, err := k.decode(&s.opts, path)
	if err != nil {
		return nil, err
	}
	if k.check != nil {
		if err := k.check(opts); err != nil {
			return nil, fmt.Errorf("%s:%d: step %q (%s): %v", path, optsLine(s), s.Name, s.Kind, err)
		}
	}
	return s, nil
}

// optsLine is the line of a step's options (the step's own line when they are empty).
func optsLine(s *Step) int {
	if s.opts.Line > 0 {
		return s.opts.Line
	}
	return s.Line
}

func looksLikePath(s string) bool {
	return strings.ContainsAny(s, "/\\") || strings.HasSuffix(s, ".onnx") || strings.HasSuffix(s, ".safetensors")
}

var envRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in scalar values; an unset variable with
// no default is an error naming its line.
func expandEnv(n *yaml.Node, path string) error {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		var missing string
		n.Value = envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			g := envRE.FindStringSubmatch(m)
			if v, ok := os.LookupEnv(g[1]); ok {
				return v
			}
			if g[2] != "" {
				return g[3]
			}
			missing = g[1]
			return m
		})
		if missing != "" {
			return fmt.Errorf("%s:%d: environment variable %s is not set", path, n.Line, missing)
		}
		if n.Style == 0 {
			n.Tag = "" // plain scalar: let the decoder re-resolve a number or bool produced by expansion
		}
	}
	for _, c := range n.Content {
		if err := expandEnv(c, path); err != nil {
			return err
		}
	}
	return nil
}

// strictDecode checks every mapping key against the yaml names of the target struct (and
// nested structs), then decodes. yaml.v3's KnownFields works only on whole documents; this
// keeps the line numbers of a step inside the recipe.
func strictDecode(n *yaml.Node, v any, path, what string) error {
	if err := checkKeys(n, reflect.TypeOf(v), path, what); err != nil {
		return err
	}
	if err := n.Decode(v); err != nil {
		if te, ok := err.(*yaml.TypeError); ok { // its messages carry "line N:"
			return fmt.Errorf("%s: %s: %s", path, what, strings.Join(te.Errors, "; "))
		}
		return fmt.Errorf("%s:%d: %s: %v", path, n.Line, what, err)
	}
	return nil
}

func checkKeys(n *yaml.Node, t reflect.Type, path, what string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeOf(yaml.Node{}) {
		return nil // decoded later, with its own checks
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("%s:%d: unknown key %q in %s (known: %s)", path, k.Line, k.Value, what, strings.Join(sortedFieldNames(fields), ", "))
			}
			if err := checkKeys(n.Content[i+1], ft, path, what+"."+k.Value); err != nil {
				return err
			}
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for _, c := range n.Content {
			if err := checkKeys(c, t.Elem(), path, what); err != nil {
				return err
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), path, what+"."+n.Content[i].Value); err != nil {
				return err
			}
		}
	}
	return nil
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedFieldNames(m map[string]reflect.Type) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

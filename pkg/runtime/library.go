// Package runtime runs ONNX models with ONNX Runtime. It is the only optimctl package
// that imports onnxruntime_go (and so cgo's ONNX Runtime binding): everything above it
// sees plain Go values (tensor.Tensor in, tensor.Tensor out), so a later switch of
// binding touches this package alone.
//
// The ONNX Runtime shared library is loaded at run time (Init), so building optimctl
// needs no library present; every object here that owns C memory has Close.
package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryName is the file name of the ONNX Runtime shared library that optimctl looks for.
const LibraryName = "libonnxruntime.so.1"

// EnvLibrary names the environment variable that points at the ONNX Runtime library,
// used when Init is given no path.
const EnvLibrary = "OPTIMCTL_ORT_LIB"

// EnvLogLevel names the environment variable that sets ONNX Runtime's own log level
// (verbose, info, warning, error, fatal). The default is fatal: every failure ONNX
// Runtime logs at error level also comes back as the error optimctl reports, and the
// duplicate, colour-coded on stderr, would interleave with optimctl's output.
const EnvLogLevel = "OPTIMCTL_ORT_LOG"

// minMinorVersion is the oldest ONNX Runtime 1.x this build runs with: onnxruntime_go
// v1.35.0 asks for C API version 29, and ONNX Runtime 1.N provides C API versions 1..N.
const minMinorVersion = 29

var (
	// ErrLibraryNotFound: no ONNX Runtime library at any place Init looked.
	ErrLibraryNotFound = errors.New("ONNX Runtime library not found")
	// ErrLibraryTooOld: the library predates the C API this build was compiled against.
	ErrLibraryTooOld = errors.New("ONNX Runtime library too old for this build")
	// ErrCPUOnly: a GPU execution provider was requested from a CPU-only library.
	ErrCPUOnly = errors.New("ONNX Runtime library is CPU-only")
)

// lib is the process-wide library state: onnxruntime_go keeps one global environment,
// so there is one library per process.
var lib struct {
	sync.Mutex
	path    string // set once loaded
	version string
}

// Init loads the ONNX Runtime library and creates the global environment. It is
// idempotent: once loaded, Init("") and Init(samePath) return nil, while another path
// is an error because a process cannot switch libraries.
//
// With libPath == "" the library is looked for, in order: $OPTIMCTL_ORT_LIB; beside the
// executable, in <exe dir>/../.cache/ort and <exe dir>/../lib; in .cache/ort of the
// current directory and each parent up to the one holding go.mod; and in
// $HOME/.cache/optimctl/ort.
func Init(libPath string) error {
	lib.Lock()
	defer lib.Unlock()
	if lib.path != "" {
		if libPath == "" || sameFile(libPath, lib.path) {
			return nil
		}
		return fmt.Errorf("ONNX Runtime already loaded from %s; one process cannot switch to %s", lib.path, libPath)
	}
	path, err := resolveLibrary(libPath)
	if err != nil {
		return err
	}
	version, err := libraryVersion(path)
	if err != nil {
		return fmt.Errorf("loading ONNX Runtime library %s: %w", path, err)
	}
	if !versionSupported(version) {
		return tooOld(path, version)
	}
	logLevel, err := logOption(os.Getenv(EnvLogLevel))
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(logLevel); err != nil {
		// Our version check makes this unlikely, but onnxruntime_go reports an unavailable
		// API version only as a number; say what it means.
		if strings.Contains(err.Error(), "Error setting ORT API base: 2") {
			return tooOld(path, version)
		}
		return fmt.Errorf("initializing ONNX Runtime from %s: %w", path, err)
	}
	lib.path, lib.version = path, version
	return nil
}

// ensureInit loads the library from the default places unless Init already ran, so
// that NewSession works without ceremony in tests and simple callers.
func ensureInit() error { return Init("") }

// Version is the loaded ONNX Runtime's version string (e.g. "1.30.0"), or "" before Init.
func Version() string {
	lib.Lock()
	defer lib.Unlock()
	return lib.version
}

// LibraryPath is the file Init loaded, or "" before Init; reports name it.
func LibraryPath() string {
	lib.Lock()
	defer lib.Unlock()
	return lib.path
}

func tooOld(path, version string) error {
	return fmt.Errorf("%w: %s is ONNX Runtime %s, this build needs 1.%d or newer (C API %d); run `make setup` or pass --ort-lib",
		ErrLibraryTooOld, path, version, minMinorVersion, minMinorVersion)
}

// versionSupported reports whether "1.N.x" has N >= minMinorVersion. Unparseable
// versions pass: onnxruntime_go still refuses a missing API version, and Init maps that.
func versionSupported(v string) bool {
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return true
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return true
	}
	return major > 1 || (major == 1 && minor >= minMinorVersion)
}

// resolveLibrary picks the library file: an explicit path or $OPTIMCTL_ORT_LIB is
// authoritative (no fallback that would silently load something else), otherwise the
// first existing candidate wins.
func resolveLibrary(explicit string) (string, error) {
	if explicit != "" {
		return existing(explicit, "--ort-lib")
	}
	if env := os.Getenv(EnvLibrary); env != "" {
		return existing(env, "$"+EnvLibrary)
	}
	exe, _ := os.Executable()
	cwd, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	tried := libraryCandidates(exe, cwd, home)
	for _, p := range tried {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w; looked in:\n  %s\nrun `make setup` or pass --ort-lib (or set $%s)",
		ErrLibraryNotFound, strings.Join(tried, "\n  "), EnvLibrary)
}

func existing(path, from string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s (from %s): %v; run `make setup` or pass --ort-lib", ErrLibraryNotFound, path, from, err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%w: %s (from %s) is a directory; point at the %s file itself", ErrLibraryNotFound, path, from, LibraryName)
	}
	return path, nil
}

// libraryCandidates lists the default places in search order; a pure function of the
// executable path, working directory and home directory so that it can be tested.
func libraryCandidates(exe, cwd, home string) []string {
	var c []string
	if exe != "" {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		dir := filepath.Dir(exe)
		c = append(c,
			filepath.Join(dir, LibraryName),
			filepath.Join(dir, "..", ".cache", "ort", LibraryName),
			filepath.Join(dir, "..", "lib", LibraryName))
	}
	for dir := cwd; dir != ""; {
		c = append(c, filepath.Join(dir, ".cache", "ort", LibraryName))
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if home != "" {
		c = append(c, filepath.Join(home, ".cache", "optimctl", "ort", LibraryName))
	}
	for i, p := range c {
		c[i] = filepath.Clean(p)
	}
	return c
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

func logOption(level string) (ort.EnvironmentOption, error) {
	switch strings.ToLower(level) {
	case "", "fatal":
		return ort.WithLogLevelFatal(), nil
	case "error":
		return ort.WithLogLevelError(), nil
	case "warning":
		return ort.WithLogLevelWarning(), nil
	case "info":
		return ort.WithLogLevelInfo(), nil
	case "verbose":
		return ort.WithLogLevelVerbose(), nil
	}
	return nil, fmt.Errorf("$%s=%q: want verbose, info, warning, error or fatal", EnvLogLevel, level)
}

package runtime

// The providers a library offers are read through OrtApi::GetAvailableProviders, which
// onnxruntime_go does not wrap. OrtApi is a table of function pointers that ONNX Runtime
// only ever appends to, so an entry keeps its index in every later version: the indexes
// below are those of onnxruntime_c_api.h (ORT_API_VERSION 29).

/*
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} optimctl_api_base2;

typedef const optimctl_api_base2 *(*optimctl_get_api_base2)(void);
typedef void *optimctl_status; // OrtStatus*
typedef const char *(*optimctl_error_message)(const optimctl_status);
typedef optimctl_status (*optimctl_get_providers)(char ***out, int *n);
typedef optimctl_status (*optimctl_release_providers)(char **ptr, int n);
typedef void (*optimctl_release_status)(optimctl_status);

enum {
	OPTIMCTL_ORT_API = 29,           // the oldest ONNX Runtime optimctl accepts is 1.29
	OPTIMCTL_GET_ERROR_MESSAGE = 2,
	OPTIMCTL_RELEASE_STATUS = 93,
	OPTIMCTL_GET_AVAILABLE_PROVIDERS = 125,
	OPTIMCTL_RELEASE_AVAILABLE_PROVIDERS = 126,
};

// optimctl_ort_providers returns the providers as one malloc'd string, names separated by
// '\n', or NULL with *err set (malloc'd).
static char *optimctl_ort_providers(const char *path, char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		*err = strdup(dlerror());
		return NULL;
	}
	optimctl_get_api_base2 f = (optimctl_get_api_base2)dlsym(h, "OrtGetApiBase");
	const optimctl_api_base2 *base = f ? f() : NULL;
	void *const *api = base && base->GetApi ? (void *const *)base->GetApi(OPTIMCTL_ORT_API) : NULL;
	if (!api) {
		*err = strdup("the library has no ONNX Runtime API 29");
		return NULL;
	}
	char **names = NULL;
	int n = 0;
	optimctl_status st = ((optimctl_get_providers)api[OPTIMCTL_GET_AVAILABLE_PROVIDERS])(&names, &n);
	if (st) {
		*err = strdup(((optimctl_error_message)api[OPTIMCTL_GET_ERROR_MESSAGE])(st));
		((optimctl_release_status)api[OPTIMCTL_RELEASE_STATUS])(st);
		return NULL;
	}
	size_t len = 1;
	for (int i = 0; i < n; i++)
		len += strlen(names[i]) + 1;
	char *out = calloc(len, 1);
	for (int i = 0; out && i < n; i++) {
		if (i > 0)
			strcat(out, "\n");
		strcat(out, names[i]);
	}
	st = ((optimctl_release_providers)api[OPTIMCTL_RELEASE_AVAILABLE_PROVIDERS])(names, n);
	if (st)
		((optimctl_release_status)api[OPTIMCTL_RELEASE_STATUS])(st);
	if (!out)
		*err = strdup("out of memory");
	return out;
}
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"
)

// ONNX Runtime's names of the execution providers optimctl can ask for.
const (
	ortProviderCPU      = "CPUExecutionProvider"
	ortProviderCUDA     = "CUDAExecutionProvider"
	ortProviderTensorRT = "TensorrtExecutionProvider"
)

// AvailableProviders lists the execution providers compiled into the loaded ONNX Runtime
// library (ONNX Runtime's names, e.g. "TensorrtExecutionProvider", "CPUExecutionProvider").
// A provider listed here can still fail to load when its shared library or CUDA is missing.
func AvailableProviders() ([]string, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	cpath := C.CString(LibraryPath())
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	s := C.optimctl_ort_providers(cpath, &cerr)
	if s == nil {
		msg := "unknown error"
		if cerr != nil {
			msg = C.GoString(cerr)
			C.free(unsafe.Pointer(cerr))
		}
		return nil, fmt.Errorf("%s: listing execution providers: %s", LibraryPath(), msg)
	}
	defer C.free(unsafe.Pointer(s))
	if C.GoString(s) == "" {
		return nil, nil
	}
	return strings.Split(C.GoString(s), "\n"), nil
}

// CheckProvider tells, before any session is made, whether the loaded library can run the
// execution provider ep ("cpu", "cuda", "tensorrt"): it must be compiled in (a CPU-only build
// gives an error wrapping ErrCPUOnly), and its shared libraries, which ONNX Runtime loads from
// its own folder, must be there (the npm and PyPI GPU builds list CUDA and TensorRT but ship
// them separately). The message names the library, its version and what it offers.
func CheckProvider(ep string) error {
	var want, lib string
	switch strings.ToLower(ep) {
	case "", ProviderCPU:
		return nil
	case ProviderCUDA:
		want, lib = ortProviderCUDA, "libonnxruntime_providers_cuda.so"
	case ProviderTensorRT:
		want, lib = ortProviderTensorRT, "libonnxruntime_providers_tensorrt.so"
	default:
		return fmt.Errorf("unknown execution provider %q (want cpu, cuda or tensorrt)", ep)
	}
	have, err := AvailableProviders()
	if err != nil {
		return err
	}
	offers := strings.Join(have, ", ")
	if !slices.Contains(have, want) {
		if !slices.Contains(have, ortProviderCUDA) {
			return fmt.Errorf("--ep %s: %w: %s (ONNX Runtime %s) offers %s only; point --ort-lib or $%s at a GPU build of ONNX Runtime 1.%d or newer with %s",
				ep, ErrCPUOnly, LibraryPath(), Version(), offers, EnvLibrary, minMinorVersion, want)
		}
		return fmt.Errorf("--ep %s: %s (ONNX Runtime %s) has no %s (it offers %s); point --ort-lib or $%s at a build of ONNX Runtime 1.%d or newer with it",
			ep, LibraryPath(), Version(), want, offers, EnvLibrary, minMinorVersion)
	}
	dir := filepath.Dir(LibraryPath())
	var missing []string
	for _, f := range []string{"libonnxruntime_providers_shared.so", lib} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		verb, deps := "is", "CUDA and cuDNN"
		if len(missing) > 1 {
			verb = "are"
		}
		if want == ortProviderTensorRT {
			deps = "CUDA, cuDNN and TensorRT"
		}
		return fmt.Errorf("--ep %s: %s (ONNX Runtime %s) lists %s, but %s %s not in %s (put the provider libraries of the same ONNX Runtime release there, with %s installed)",
			ep, LibraryPath(), Version(), want, strings.Join(missing, " and "), verb, dir, deps)
	}
	return nil
}

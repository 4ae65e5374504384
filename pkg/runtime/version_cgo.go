package runtime

// The version is read through the library's one stable entry point, OrtGetApiBase, whose
// struct starts with GetApi and GetVersionString (ONNX Runtime's C ABI since 1.0). Reading
// it before onnxruntime_go initializes lets Init name the version of a library that is
// too old, instead of onnxruntime_go's bare "Error setting ORT API base: 2".

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} optimctl_api_base;

typedef const optimctl_api_base *(*optimctl_get_api_base)(void);

// The handle stays open on success: the version string lives in the library, and
// onnxruntime_go loads the same file next anyway.
static char *optimctl_ort_version(const char *path, char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		*err = strdup(dlerror());
		return NULL;
	}
	optimctl_get_api_base f = (optimctl_get_api_base)dlsym(h, "OrtGetApiBase");
	if (!f) {
		*err = strdup("no OrtGetApiBase symbol: not an ONNX Runtime library");
		dlclose(h);
		return NULL;
	}
	const optimctl_api_base *base = f();
	if (!base || !base->GetVersionString) {
		*err = strdup("OrtGetApiBase returned nothing");
		return NULL;
	}
	return strdup(base->GetVersionString());
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// libraryVersion dlopens path and returns its ONNX Runtime version string.
func libraryVersion(path string) (string, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	v := C.optimctl_ort_version(cpath, &cerr)
	if v == nil {
		msg := "unknown dlopen error"
		if cerr != nil {
			msg = C.GoString(cerr)
			C.free(unsafe.Pointer(cerr))
		}
		return "", errors.New(msg)
	}
	defer C.free(unsafe.Pointer(v))
	return C.GoString(v), nil
}

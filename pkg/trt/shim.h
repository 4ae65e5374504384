/*
 * shim.h — the C interface between optimctl's Go code and TensorRT's C++ API.
 *
 * Plain C so that cgo can call it and so that no C++ type, exception or ABI detail crosses
 * into Go: handles are opaque, every call returns an OTRT_* status and writes a one-line
 * message into a caller-provided buffer, memory returned by the shim is freed by the shim.
 * Two implementations: shim.cc (build tag `tensorrt`, TensorRT 10.x and 11.x headers) and
 * fake_shim.c (build tag `trtfake`, a stand-in for the plumbing tests).
 *
 * Callbacks into Go are the otrt_go_* functions below; the Go side exports them (cgo
 * //export). Their pointer parameters are not const because cgo's generated prototypes
 * carry no const and the two declarations must agree; the callbacks never write through
 * them except where documented.
 */
#ifndef OPTIMCTL_TRT_SHIM_H
#define OPTIMCTL_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes of every otrt_* call. */
enum {
    OTRT_OK = 0,
    OTRT_ERR_ARGS = 1,        /* invalid options (a bug on the Go side, or an unknown input name) */
    OTRT_ERR_IO = 2,          /* the model file could not be read */
    OTRT_ERR_PARSE = 3,       /* the ONNX parser failed; errors were sent to otrt_go_parser_error */
    OTRT_ERR_UNSUPPORTED = 4, /* the option does not exist in this TensorRT (e.g. --int8 on 11.x) */
    OTRT_ERR_BUILD = 5,       /* buildSerializedNetwork failed; the builder log says why */
    OTRT_ERR_CALIB = 6,       /* a calibration callback failed (the Go side holds the error) */
    OTRT_ERR_CANCELED = 7,    /* the progress callback asked to stop */
    OTRT_ERR_INTERNAL = 8     /* allocation failure, CUDA error or an exception inside the shim */
};

/* Dims64::MAX_DIMS in TensorRT 10 and 11. */
#define OTRT_MAX_DIMS 8

/* Bits of otrt_build_options.flags. */
enum {
    OTRT_FLAG_FP16 = 1u << 0,               /* BuilderFlag::kFP16 (10.x only) */
    OTRT_FLAG_INT8 = 1u << 1,               /* BuilderFlag::kINT8 (10.x only) */
    OTRT_FLAG_FP8 = 1u << 2,                /* BuilderFlag::kFP8 (10.x only) */
    OTRT_FLAG_STRONGLY_TYPED = 1u << 3,     /* NetworkDefinitionCreationFlag::kSTRONGLY_TYPED (always on in 11.x) */
    OTRT_FLAG_SPARSE_WEIGHTS = 1u << 4,     /* BuilderFlag::kSPARSE_WEIGHTS */
    OTRT_FLAG_REFIT = 1u << 5,              /* BuilderFlag::kREFIT */
    OTRT_FLAG_VERSION_COMPATIBLE = 1u << 6, /* BuilderFlag::kVERSION_COMPATIBLE */
    OTRT_FLAG_CALIBRATE = 1u << 7           /* attach the INT8 entropy calibrator (10.x only) */
};

/* Log severities, numbered as ILogger::Severity. */
enum {
    OTRT_LOG_INTERNAL_ERROR = 0,
    OTRT_LOG_ERROR = 1,
    OTRT_LOG_WARNING = 2,
    OTRT_LOG_INFO = 3,
    OTRT_LOG_VERBOSE = 4
};

/* Progress events passed to otrt_go_progress. */
enum { OTRT_PHASE_START = 0, OTRT_PHASE_STEP = 1, OTRT_PHASE_FINISH = 2 };

/* Element types use ONNX's TensorProto.DataType numbering (1 float, 10 float16, ...), the
 * numbering of optimctl's tensor.DType, so Go needs no TensorRT table. 0 = not representable. */

/* otrt_input describes one network input after parsing. */
typedef struct otrt_input {
    const char *name; /* owned by the network; valid until otrt_network_free */
    int32_t dtype;    /* ONNX element type */
    int32_t nb_dims;
    int64_t dims[OTRT_MAX_DIMS]; /* -1 for a dynamic dimension */
    int32_t is_shape_tensor;     /* 1 if the input holds a shape (needs shape values, not dims) */
} otrt_input;

/* otrt_profile_input is one input's dimensions in optimisation profile `profile`; the entries
 * come grouped by profile, numbered 0, 1, ... (profile 0 is the calibration profile). */
typedef struct otrt_profile_input {
    const char *name;
    int32_t nb_dims;
    int32_t profile;
    int64_t min[OTRT_MAX_DIMS];
    int64_t opt[OTRT_MAX_DIMS];
    int64_t max[OTRT_MAX_DIMS];
} otrt_profile_input;

/* otrt_build_options is everything otrt_build needs besides the network. All pointers are
 * borrowed for the duration of the call. */
typedef struct otrt_build_options {
    uint32_t flags;           /* OTRT_FLAG_* */
    int32_t reserved;         /* zero; keeps the 64-bit fields aligned the same everywhere */
    uint64_t workspace_bytes; /* MemoryPoolType::kWORKSPACE limit; 0 = TensorRT's default */
    const otrt_profile_input *profile; /* NULL/0 when every input is static */
    int32_t nb_profile;
    int32_t reserved2;
    const void *timing_cache; /* serialized timing cache to start from; NULL = empty */
    uint64_t timing_cache_size;
} otrt_build_options;

/* otrt_tensor is one calibration input the shim asks Go to fill (host memory, owned by the
 * shim, exactly `size` bytes, laid out densely in `dims` order). */
typedef struct otrt_tensor {
    const char *name;
    int32_t dtype;
    int32_t nb_dims;
    int64_t dims[OTRT_MAX_DIMS];
    void *host;
    uint64_t size;
} otrt_tensor;

typedef struct otrt_network otrt_network; /* builder + network + parser */
typedef struct otrt_result otrt_result;   /* serialized engine + timing cache */

/* Versions as major*10000 + minor*100 + patch: of the library loaded, and of the headers
 * the shim was compiled against. A library of another major than its headers is refused. */
int32_t otrt_library_version(void);
int32_t otrt_header_version(void);

/* otrt_parse creates a builder and an empty network, then parses the ONNX model at `path`
 * into it (external data is found relative to the path). `ctx` is passed back to every
 * callback made on behalf of this network and of the build that follows; log messages
 * up to `log_severity` (OTRT_LOG_*) are forwarded. `strongly_typed` creates the network
 * strongly typed (10.x; ignored on 11.x where every network is). On OTRT_ERR_PARSE, each
 * parser error has been sent to otrt_go_parser_error and `msg` holds a summary. On any
 * error *out is NULL. */
int otrt_parse(const char *path, uintptr_t ctx, int32_t log_severity, int32_t strongly_typed,
               otrt_network **out, char *msg, size_t msg_cap);

int32_t otrt_network_nb_inputs(const otrt_network *net);
int otrt_network_input(const otrt_network *net, int32_t index, otrt_input *out);

/* otrt_build builds and serializes the engine. With OTRT_FLAG_CALIBRATE the INT8 calibrator
 * pulls batches through otrt_go_get_batch at the profile's opt dimensions (or the static
 * ones) and its cache through otrt_go_read_calib_cache / otrt_go_write_calib_cache. */
int otrt_build(otrt_network *net, const otrt_build_options *opts, otrt_result **out, char *msg,
               size_t msg_cap);

/* Views into a result; valid until otrt_result_free. The timing cache is empty (size 0)
 * when TensorRT produced none. */
void otrt_result_engine(const otrt_result *res, const void **data, uint64_t *size);
void otrt_result_timing_cache(const otrt_result *res, const void **data, uint64_t *size);

void otrt_result_free(otrt_result *res);
void otrt_network_free(otrt_network *net);

/* ---- Running a serialized engine (bench and validate of a .plan) ----
 * One TensorRT object is open at a time per process (a network between otrt_parse and
 * otrt_network_free, or an engine between otrt_engine_load and otrt_engine_free), because
 * TensorRT's logger is process-wide and routes to one ctx. */

typedef struct otrt_engine otrt_engine; /* runtime + engine + execution context + device buffers + stream */

/* otrt_io describes one engine input or output. */
typedef struct otrt_io {
    const char *name; /* owned by the engine */
    int32_t is_input;
    int32_t dtype;    /* ONNX element type */
    int32_t nb_dims;
    int64_t dims[OTRT_MAX_DIMS]; /* -1 for a dimension chosen at run time */
} otrt_io;

/* otrt_engine_load deserializes a plan (the bytes may be freed afterwards) and creates an
 * execution context. Logging as for otrt_parse. */
int otrt_engine_load(const void *plan, uint64_t size, uintptr_t ctx, int32_t log_severity, otrt_engine **out,
                     char *msg, size_t msg_cap);
int32_t otrt_engine_nb_io(const otrt_engine *e);
int otrt_engine_io(const otrt_engine *e, int32_t index, otrt_io *out);

/* otrt_engine_set_inputs selects the first optimisation profile whose range holds every
 * input's shape (inputs[i].dims), sets the shapes and copies the host bytes to the GPU; it then describes the outputs in io order in outputs[0..nb_outputs) (name,
 * dtype, dims, size; host left as given). Outputs whose shape depends on input values are
 * refused with OTRT_ERR_UNSUPPORTED. */
int otrt_engine_set_inputs(otrt_engine *e, int32_t nb_inputs, const otrt_tensor *inputs, int32_t nb_outputs,
                           otrt_tensor *outputs, char *msg, size_t msg_cap);

/* otrt_engine_execute runs the engine once on the inputs last set and waits for it; with
 * copy_outputs it copies each output into outputs[j].host (outputs[j].size bytes). *gpu_ms
 * is the GPU time of the run (CUDA events). */
int otrt_engine_execute(otrt_engine *e, int32_t nb_outputs, const otrt_tensor *outputs, int32_t copy_outputs,
                        double *gpu_ms, char *msg, size_t msg_cap);

void otrt_engine_free(otrt_engine *e);

/* ---- Callbacks implemented in Go (cgo //export). ctx is the value given to otrt_parse or
 * otrt_engine_load. ---- */

/* One builder or parser log line. May be called from any TensorRT thread. */
void otrt_go_log(uintptr_t ctx, int32_t severity, char *msg);

/* One ONNX parser error: parser ErrorCode, node index (-1 if none), node name and operator
 * ("" if none), description. */
void otrt_go_parser_error(uintptr_t ctx, int32_t code, int32_t node, char *node_name, char *node_op,
                          char *desc);

/* Fill the next calibration batch: Go writes tensors[i].host (tensors[i].size bytes) for
 * each of the nb inputs. Returns 1 when filled, 0 when there are no more batches, -1 on an
 * error (kept by the Go side). */
int otrt_go_get_batch(uintptr_t ctx, int32_t nb, otrt_tensor *tensors);

/* Provide a calibration cache to read: sets *data and *size (memory owned by Go, valid until
 * the build returns) or *size = 0 for none. Returns 0, or -1 on an error. */
int otrt_go_read_calib_cache(uintptr_t ctx, void **data, uint64_t *size);

/* Receive the calibration cache TensorRT produced (copied by Go). Returns 0, or -1. */
int otrt_go_write_calib_cache(uintptr_t ctx, void *data, uint64_t size);

/* Build progress (OTRT_PHASE_*); a return of 0 on a step cancels the build. */
int otrt_go_progress(uintptr_t ctx, int32_t event, char *phase, char *parent, int32_t nb_steps);

#ifdef __cplusplus
}
#endif

#endif /* OPTIMCTL_TRT_SHIM_H */

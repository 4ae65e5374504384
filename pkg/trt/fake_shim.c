//go:build trtfake

/*
 * fake_shim.c — a stand-in for shim.cc, compiled with the trtfake build tag, for the Go↔C
 * plumbing tests: it needs no GPU and no TensorRT. It keeps shim.h's contract and mimics
 * the behaviour the Go side depends on, and instead of an engine it returns a text echo of
 * everything it received (flags, workspace, profile, timing cache, checksums of each
 * calibration batch, the calibration cache read), which the tests parse.
 *
 * The "model" is a text file, one directive per line ('#' starts a comment):
 *   input NAME DTYPE DIMS     a network input; DTYPE is the ONNX number, DIMS like -1x3x8x8
 *   shape_input NAME DIMS     an int64 shape-tensor input
 *   error CODE NODE NAME OP DESC...   a parser error (NAME/OP "-" for none); parsing fails
 *   log SEVERITY TEXT...      a log line emitted while parsing
 *   build_error TEXT...       the build fails with this message
 *   calib_max N               stop calibration after N batches
 * The library version is 101600 (10.16.0), or $OTRT_FAKE_VERSION.
 *
 * An engine ("plan") is text too: a first line "fake-plan 1", then per io tensor
 *   io NAME in|out DTYPE DIMS   output dims of -1 take the set dims of the input it copies,
 *                               -2 marks a shape that depends on input values
 * Running it copies input k % (number of inputs) into output k, byte for byte, on the "device"
 * (buffers of the fake's own), and reports 0.5 ms.
 */
#include "shim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_MAX_INPUTS 16
#define FAKE_NAME 128

/* live counts networks, results and staging buffers not yet freed; the tests assert 0. */
static int live;
int otrt_fake_live(void) { return __atomic_load_n(&live, __ATOMIC_SEQ_CST); }
static void track(int d) { __atomic_add_fetch(&live, d, __ATOMIC_SEQ_CST); }

static int32_t fake_version(void)
{
    const char *v = getenv("OTRT_FAKE_VERSION");
    return v != NULL && *v != '\0' ? (int32_t)atoi(v) : 101600;
}
int32_t otrt_library_version(void) { return fake_version(); }
int32_t otrt_header_version(void) { return fake_version(); }

/* text is a growable string for the echoed engine. */
typedef struct text {
    char *data;
    size_t len, cap;
} text;

static int tprintf(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *p = realloc(t->data, cap);
        if (p == NULL)
            return -1;
        t->data = p;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
    return 0;
}

static uint64_t fnv1a(const void *p, uint64_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ULL;
    for (uint64_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

struct otrt_network {
    uintptr_t ctx;
    int32_t log_severity;
    int32_t strongly_typed;
    int nb_inputs;
    otrt_input inputs[FAKE_MAX_INPUTS];
    char names[FAKE_MAX_INPUTS][FAKE_NAME];
    char build_error[256];
    long calib_max;
};

struct otrt_result {
    text engine;
    text timing;
};

static void fake_log(const otrt_network *n, int32_t sev, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (sev > n->log_severity)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    otrt_go_log(n->ctx, sev, line);
}

static void set_msg(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (msg == NULL || cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

static int parse_dims(const char *s, otrt_input *in)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    in->nb_dims = 0;
    for (char *save = NULL, *tok = strtok_r(buf, "x", &save); tok != NULL; tok = strtok_r(NULL, "x", &save)) {
        if (in->nb_dims == OTRT_MAX_DIMS)
            return -1;
        in->dims[in->nb_dims++] = strtoll(tok, NULL, 10);
    }
    return in->nb_dims > 0 ? 0 : -1;
}

/* rest returns the text after the first k space-separated fields of line. */
static char *rest(char *line, int k)
{
    char *p = line;
    for (int i = 0; i < k && p != NULL; i++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    return p != NULL ? p : (char *)"";
}

int otrt_parse(const char *path, uintptr_t ctx, int32_t log_severity, int32_t strongly_typed, otrt_network **out,
               char *msg, size_t msg_cap)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        set_msg(msg, msg_cap, "cannot open %s", path);
        return OTRT_ERR_IO;
    }
    otrt_network *n = calloc(1, sizeof *n);
    if (n == NULL) {
        fclose(f);
        set_msg(msg, msg_cap, "out of memory");
        return OTRT_ERR_INTERNAL;
    }
    n->ctx = ctx;
    n->log_severity = log_severity;
    n->strongly_typed = strongly_typed;
    n->calib_max = 1L << 20;
    char line[1024], first[512] = "";
    int nerr = 0, lineno = 0, status = OTRT_OK;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        char word[64] = "", a[FAKE_NAME] = "", b[FAKE_NAME] = "", c[FAKE_NAME] = "", d[FAKE_NAME] = "";
        if (line[0] == '#' || sscanf(line, "%63s", word) != 1)
            continue;
        if (strcmp(word, "input") == 0 || strcmp(word, "shape_input") == 0) {
            int shape = strcmp(word, "shape_input") == 0;
            otrt_input *in = &n->inputs[n->nb_inputs];
            int ok = n->nb_inputs < FAKE_MAX_INPUTS &&
                     (shape ? sscanf(line, "%*s %127s %127s", a, c) == 2 : sscanf(line, "%*s %127s %127s %127s", a, b, c) == 3) &&
                     parse_dims(c, in) == 0;
            if (!ok) {
                set_msg(msg, msg_cap, "fake model line %d: bad input", lineno);
                status = OTRT_ERR_ARGS;
                break;
            }
            snprintf(n->names[n->nb_inputs], FAKE_NAME, "%s", a);
            in->name = n->names[n->nb_inputs];
            in->dtype = shape ? 7 : atoi(b);
            in->is_shape_tensor = shape;
            n->nb_inputs++;
        } else if (strcmp(word, "error") == 0) {
            int code = 0, node = -1;
            if (sscanf(line, "%*s %d %d %127s %127s", &code, &node, a, d) != 4) {
                set_msg(msg, msg_cap, "fake model line %d: bad error", lineno);
                status = OTRT_ERR_ARGS;
                break;
            }
            char *name = strcmp(a, "-") == 0 ? (char *)"" : a, *op = strcmp(d, "-") == 0 ? (char *)"" : d;
            char *desc = rest(line, 5);
            otrt_go_parser_error(ctx, code, node, name, op, desc);
            if (nerr++ == 0)
                snprintf(first, sizeof first, "node %d %s (%s): %s", node, name, op, desc);
        } else if (strcmp(word, "log") == 0) {
            fake_log(n, (int32_t)atoi(rest(line, 1)), "%s", rest(line, 2));
        } else if (strcmp(word, "build_error") == 0) {
            snprintf(n->build_error, sizeof n->build_error, "%s", rest(line, 1));
        } else if (strcmp(word, "calib_max") == 0) {
            n->calib_max = atol(rest(line, 1));
        } else {
            set_msg(msg, msg_cap, "fake model line %d: unknown directive %s", lineno, word);
            status = OTRT_ERR_ARGS;
            break;
        }
    }
    fclose(f);
    if (status == OTRT_OK && nerr > 0) {
        set_msg(msg, msg_cap, "%d ONNX parser error(s); first: %s", nerr, first);
        status = OTRT_ERR_PARSE;
    }
    if (status != OTRT_OK) {
        free(n);
        return status;
    }
    track(1);
    *out = n;
    return OTRT_OK;
}

int32_t otrt_network_nb_inputs(const otrt_network *net) { return net->nb_inputs; }

int otrt_network_input(const otrt_network *net, int32_t index, otrt_input *out)
{
    if (index < 0 || index >= net->nb_inputs)
        return OTRT_ERR_ARGS;
    *out = net->inputs[index];
    return OTRT_OK;
}

static int64_t element_size(int32_t onnx)
{
    switch (onnx) {
    case 1: case 6: return 4;
    case 10: case 16: return 2;
    case 2: case 3: case 9: case 17: return 1;
    case 7: return 8;
    default: return 0;
    }
}

static void dims_text(text *t, int32_t nb, const int64_t *d)
{
    for (int32_t i = 0; i < nb; i++)
        tprintf(t, i == 0 ? "%lld" : "x%lld", (long long)d[i]);
}

static const otrt_profile_input *find_profile(const otrt_build_options *o, int32_t profile, const char *name)
{
    for (int32_t p = 0; p < o->nb_profile; p++)
        if (o->profile[p].profile == profile && strcmp(o->profile[p].name, name) == 0)
            return &o->profile[p];
    return NULL;
}

/* check_profile mimics what TensorRT refuses: unknown names, rank or static-dim mismatch,
 * min > opt > max, and dynamic inputs left out of a profile; and the shim's own check that
 * the entries come grouped by profile number. */
static int check_profile(const otrt_network *n, const otrt_build_options *o, char *msg, size_t cap)
{
    int32_t nprof = 0;
    for (int32_t p = 0; p < o->nb_profile; p++) {
        const otrt_profile_input *pi = &o->profile[p];
        if (pi->profile != nprof - 1) {
            if (pi->profile != nprof) {
                set_msg(msg, cap, "optimization profile entries out of order");
                return OTRT_ERR_ARGS;
            }
            nprof++;
        }
        const otrt_input *in = NULL;
        for (int i = 0; i < n->nb_inputs; i++)
            if (strcmp(n->inputs[i].name, pi->name) == 0)
                in = &n->inputs[i];
        int ok = in != NULL && in->nb_dims == pi->nb_dims;
        for (int32_t k = 0; ok && k < pi->nb_dims; k++)
            ok = pi->min[k] <= pi->opt[k] && pi->opt[k] <= pi->max[k] &&
                 (in->dims[k] < 0 || (pi->min[k] == in->dims[k] && pi->max[k] == in->dims[k]));
        if (!ok) {
            set_msg(msg, cap, "input %s: TensorRT refused the profile dimensions", pi->name);
            return OTRT_ERR_ARGS;
        }
    }
    for (int32_t q = 0; q < (nprof > 0 ? nprof : 1); q++)
        for (int i = 0; i < n->nb_inputs; i++)
            for (int32_t k = 0; k < n->inputs[i].nb_dims; k++)
                if (n->inputs[i].dims[k] < 0 && find_profile(o, q, n->inputs[i].name) == NULL) {
                    set_msg(msg, cap, "input %s has dynamic dimensions and no dimensions in optimization profile %d", n->inputs[i].name, q);
                    return OTRT_ERR_BUILD;
                }
    return OTRT_OK;
}

static int calibrate(const otrt_network *n, const otrt_build_options *o, text *echo, char *msg, size_t cap)
{
    void *cache = NULL;
    uint64_t cache_size = 0;
    if (otrt_go_read_calib_cache(n->ctx, &cache, &cache_size) != 0) {
        set_msg(msg, cap, "calibration failed");
        return OTRT_ERR_CALIB;
    }
    if (cache_size > 0) {
        const char *c = cache;
        size_t hl = 0;
        while (hl < cache_size && c[hl] != '\n')
            hl++;
        tprintf(echo, "calib_cache_in %llu %016llx %.*s\n", (unsigned long long)cache_size,
                (unsigned long long)fnv1a(cache, cache_size), (int)hl, c);
        return OTRT_OK;
    }
    otrt_tensor t[FAKE_MAX_INPUTS];
    memset(t, 0, sizeof t);
    int status = OTRT_OK;
    for (int i = 0; i < n->nb_inputs; i++) {
        const otrt_input *in = &n->inputs[i];
        const otrt_profile_input *p = find_profile(o, 0, in->name); /* TensorRT calibrates in profile 0 */
        int64_t size = element_size(in->dtype);
        t[i].name = in->name;
        t[i].dtype = in->dtype;
        t[i].nb_dims = in->nb_dims;
        for (int32_t k = 0; k < in->nb_dims; k++) {
            t[i].dims[k] = p != NULL ? p->opt[k] : in->dims[k];
            size *= t[i].dims[k];
        }
        if (size <= 0) {
            set_msg(msg, cap, "calibration: input %s has no fixed calibration shape", in->name);
            status = OTRT_ERR_ARGS;
            goto out;
        }
        t[i].size = (uint64_t)size;
        t[i].host = malloc((size_t)size);
        if (t[i].host == NULL) {
            status = OTRT_ERR_INTERNAL;
            goto out;
        }
        memset(t[i].host, 0xAB, (size_t)size); /* garbage Go must overwrite */
        track(1);
    }
    long batches = 0;
    while (batches < n->calib_max) {
        int r = otrt_go_get_batch(n->ctx, n->nb_inputs, t);
        if (r < 0) {
            set_msg(msg, cap, "calibration failed");
            status = OTRT_ERR_CALIB;
            goto out;
        }
        if (r == 0)
            break;
        for (int i = 0; i < n->nb_inputs; i++)
            tprintf(echo, "batch %ld %s %llu %016llx\n", batches, t[i].name, (unsigned long long)t[i].size,
                    (unsigned long long)fnv1a(t[i].host, t[i].size));
        batches++;
    }
    tprintf(echo, "calib_batches %ld\n", batches);
    if (batches == 0) {
        fake_log(n, OTRT_LOG_ERROR, "Calibration failure: no calibration data");
        set_msg(msg, cap, "TensorRT could not build the engine (the builder log above says why)");
        status = OTRT_ERR_BUILD;
        goto out;
    }
    {
        text c = {0};
        tprintf(&c, "TRT-%d-EntropyCalibration2\n", fake_version());
        for (int i = 0; i < n->nb_inputs; i++)
            tprintf(&c, "%s: 3c010204\n", n->inputs[i].name); /* 1/127: amax 1 */
        int w = otrt_go_write_calib_cache(n->ctx, c.data, c.len);
        free(c.data);
        if (w != 0) {
            set_msg(msg, cap, "calibration failed");
            status = OTRT_ERR_CALIB;
        }
    }
out:
    for (int i = 0; i < n->nb_inputs; i++)
        if (t[i].host != NULL) {
            free(t[i].host);
            track(-1);
        }
    return status;
}

int otrt_build(otrt_network *n, const otrt_build_options *o, otrt_result **out, char *msg, size_t msg_cap)
{
    *out = NULL;
    const uint32_t implicit = OTRT_FLAG_FP16 | OTRT_FLAG_INT8 | OTRT_FLAG_FP8 | OTRT_FLAG_CALIBRATE;
    if (fake_version() / 10000 >= 11 && (o->flags & implicit) != 0) {
        set_msg(msg, msg_cap, "TensorRT %d has no --fp16/--int8/--fp8 builder flags or INT8 calibration",
                fake_version() / 10000);
        return OTRT_ERR_UNSUPPORTED;
    }
    if ((o->flags & OTRT_FLAG_STRONGLY_TYPED) != 0 && (o->flags & implicit) != 0) {
        set_msg(msg, msg_cap, "a strongly typed network takes its precisions from the model");
        return OTRT_ERR_ARGS;
    }
    int status = check_profile(n, o, msg, msg_cap);
    if (status != OTRT_OK)
        return status;

    otrt_result *r = calloc(1, sizeof *r);
    if (r == NULL)
        return OTRT_ERR_INTERNAL;
    text *e = &r->engine;
    tprintf(e, "fake-engine 1\nversion %d\nstrongly_typed %d\nflags 0x%08x\nworkspace %llu\n", fake_version(),
            n->strongly_typed, o->flags, (unsigned long long)o->workspace_bytes);
    for (int32_t p = 0; p < o->nb_profile; p++) {
        const otrt_profile_input *pi = &o->profile[p];
        if (pi->profile == 0)
            tprintf(e, "profile %s %d min=", pi->name, pi->nb_dims);
        else
            tprintf(e, "profile#%d %s %d min=", pi->profile, pi->name, pi->nb_dims);
        dims_text(e, pi->nb_dims, pi->min);
        tprintf(e, " opt=");
        dims_text(e, pi->nb_dims, pi->opt);
        tprintf(e, " max=");
        dims_text(e, pi->nb_dims, pi->max);
        tprintf(e, "\n");
    }
    long runs = 0;
    if (o->timing_cache_size > 0) {
        tprintf(e, "timing_cache_in %llu %016llx\n", (unsigned long long)o->timing_cache_size,
                (unsigned long long)fnv1a(o->timing_cache, o->timing_cache_size));
        if (o->timing_cache_size > 18 && memcmp(o->timing_cache, "fake-timing-cache ", 18) == 0)
            runs = strtol((const char *)o->timing_cache + 18, NULL, 10);
    }

    fake_log(n, OTRT_LOG_INFO, "fake build: %d input(s)", n->nb_inputs);
    fake_log(n, OTRT_LOG_VERBOSE, "fake build: verbose detail");
    otrt_go_progress(n->ctx, OTRT_PHASE_START, "Building engine", "", 3);
    for (int step = 0; step < 3; step++)
        if (otrt_go_progress(n->ctx, OTRT_PHASE_STEP, "Building engine", "", step) == 0) {
            set_msg(msg, msg_cap, "build canceled");
            status = OTRT_ERR_CANCELED;
            goto fail;
        }
    otrt_go_progress(n->ctx, OTRT_PHASE_FINISH, "Building engine", "", 0);

    if ((o->flags & OTRT_FLAG_CALIBRATE) != 0 && (status = calibrate(n, o, e, msg, msg_cap)) != OTRT_OK)
        goto fail;
    if (n->build_error[0] != '\0') {
        fake_log(n, OTRT_LOG_ERROR, "%s", n->build_error);
        set_msg(msg, msg_cap, "TensorRT could not build the engine (the builder log above says why)");
        status = OTRT_ERR_BUILD;
        goto fail;
    }
    tprintf(&r->timing, "fake-timing-cache %ld\n", runs + 1);
    if (e->data == NULL || r->timing.data == NULL) {
        status = OTRT_ERR_INTERNAL;
        goto fail;
    }
    track(1);
    *out = r;
    return OTRT_OK;
fail:
    free(r->engine.data);
    free(r->timing.data);
    free(r);
    return status;
}

void otrt_result_engine(const otrt_result *res, const void **data, uint64_t *size)
{
    *data = res->engine.data;
    *size = res->engine.len;
}

void otrt_result_timing_cache(const otrt_result *res, const void **data, uint64_t *size)
{
    *data = res->timing.data;
    *size = res->timing.len;
}

void otrt_result_free(otrt_result *res)
{
    if (res == NULL)
        return;
    free(res->engine.data);
    free(res->timing.data);
    free(res);
    track(-1);
}

void otrt_network_free(otrt_network *net)
{
    if (net == NULL)
        return;
    free(net);
    track(-1);
}

/* ---- engines ---- */

struct otrt_engine {
    uintptr_t ctx;
    int32_t log_severity;
    int nb;
    otrt_io io[FAKE_MAX_INPUTS];
    char names[FAKE_MAX_INPUTS][FAKE_NAME];
    int64_t set[FAKE_MAX_INPUTS][OTRT_MAX_DIMS]; /* current dims of every io tensor */
    void *device[FAKE_MAX_INPUTS];
    uint64_t size[FAKE_MAX_INPUTS];
};

int otrt_engine_load(const void *plan, uint64_t size, uintptr_t ctx, int32_t log_severity, otrt_engine **out,
                     char *msg, size_t msg_cap)
{
    *out = NULL;
    char *text = malloc((size_t)size + 1);
    otrt_engine *e = calloc(1, sizeof *e);
    int status = OTRT_OK;
    if (text == NULL || e == NULL) {
        status = OTRT_ERR_INTERNAL;
        goto done;
    }
    memcpy(text, plan, (size_t)size);
    text[size] = '\0';
    e->ctx = ctx;
    e->log_severity = log_severity;
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    if (line == NULL || strcmp(line, "fake-plan 1") != 0) {
        set_msg(msg, msg_cap, "not an engine TensorRT %d can load on this GPU", fake_version());
        status = OTRT_ERR_ARGS;
        goto done;
    }
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char name[FAKE_NAME], dir[8], dims[256];
        int dtype = 0;
        otrt_io *io = &e->io[e->nb];
        otrt_input tmp;
        if (e->nb == FAKE_MAX_INPUTS || sscanf(line, "io %127s %7s %d %255s", name, dir, &dtype, dims) != 4 ||
            parse_dims(dims, &tmp) != 0) {
            set_msg(msg, msg_cap, "fake plan: bad line %s", line);
            status = OTRT_ERR_ARGS;
            goto done;
        }
        snprintf(e->names[e->nb], FAKE_NAME, "%s", name);
        io->name = e->names[e->nb];
        io->is_input = strcmp(dir, "in") == 0;
        io->dtype = dtype;
        io->nb_dims = tmp.nb_dims;
        memcpy(io->dims, tmp.dims, sizeof io->dims);
        e->nb++;
    }
    if (e->log_severity >= OTRT_LOG_INFO) {
        char m[64];
        snprintf(m, sizeof m, "fake engine: %d io tensors", e->nb);
        otrt_go_log(ctx, OTRT_LOG_INFO, m);
    }
done:
    free(text);
    if (status != OTRT_OK) {
        free(e);
        return status;
    }
    track(1);
    *out = e;
    return OTRT_OK;
}

int32_t otrt_engine_nb_io(const otrt_engine *e) { return e->nb; }

int otrt_engine_io(const otrt_engine *e, int32_t index, otrt_io *out)
{
    if (index < 0 || index >= e->nb)
        return OTRT_ERR_ARGS;
    *out = e->io[index];
    return OTRT_OK;
}

static int find_io(const otrt_engine *e, const char *name)
{
    for (int i = 0; i < e->nb; i++)
        if (strcmp(e->io[i].name, name) == 0)
            return i;
    return -1;
}

static int ensure_device(otrt_engine *e, int i, uint64_t size)
{
    if (e->device[i] == NULL || e->size[i] != size) {
        if (e->device[i] != NULL) {
            free(e->device[i]);
            track(-1);
        }
        e->device[i] = malloc(size > 0 ? (size_t)size : 1);
        if (e->device[i] == NULL)
            return -1;
        track(1);
        e->size[i] = size;
    }
    return 0;
}

/* source is the input output k copies: input number k % (number of inputs), in io order. */
static int source(const otrt_engine *e, int k)
{
    int nin = 0, want;
    for (int i = 0; i < e->nb; i++)
        nin += e->io[i].is_input;
    if (nin == 0)
        return -1;
    want = k % nin;
    for (int i = 0; i < e->nb; i++)
        if (e->io[i].is_input && want-- == 0)
            return i;
    return -1;
}

int otrt_engine_set_inputs(otrt_engine *e, int32_t nb_inputs, const otrt_tensor *inputs, int32_t nb_outputs,
                           otrt_tensor *outputs, char *msg, size_t msg_cap)
{
    int nin = 0;
    for (int i = 0; i < e->nb; i++)
        nin += e->io[i].is_input;
    if (nb_inputs != nin || nb_outputs != e->nb - nin) {
        set_msg(msg, msg_cap, "the engine has %d inputs and %d outputs", nin, e->nb - nin);
        return OTRT_ERR_ARGS;
    }
    for (int32_t k = 0; k < nb_inputs; k++) {
        const otrt_tensor *t = &inputs[k];
        int i = find_io(e, t->name);
        if (i < 0 || !e->io[i].is_input) {
            set_msg(msg, msg_cap, "%s is not an input of the engine", t->name);
            return OTRT_ERR_ARGS;
        }
        if (t->dtype != e->io[i].dtype) {
            set_msg(msg, msg_cap, "input %s: element type differs from the engine's", t->name);
            return OTRT_ERR_ARGS;
        }
        int64_t size = element_size(t->dtype);
        int ok = t->nb_dims == e->io[i].nb_dims;
        for (int32_t d = 0; ok && d < t->nb_dims; d++) {
            ok = e->io[i].dims[d] < 0 || e->io[i].dims[d] == t->dims[d];
            size *= t->dims[d];
            e->set[i][d] = t->dims[d];
        }
        if (!ok) {
            set_msg(msg, msg_cap, "input %s: shape outside the engine's optimization profile", t->name);
            return OTRT_ERR_ARGS;
        }
        if ((uint64_t)size != t->size) {
            set_msg(msg, msg_cap, "input %s: %llu bytes for its shape, %llu given", t->name, (unsigned long long)size,
                    (unsigned long long)t->size);
            return OTRT_ERR_ARGS;
        }
        if (ensure_device(e, i, t->size) != 0)
            return OTRT_ERR_INTERNAL;
        memcpy(e->device[i], t->host, (size_t)t->size);
    }
    int32_t k = 0;
    for (int i = 0; i < e->nb; i++) {
        if (e->io[i].is_input)
            continue;
        int src = source(e, k);
        otrt_tensor *o = &outputs[k++];
        int64_t size = element_size(e->io[i].dtype);
        memset(o->dims, 0, sizeof o->dims);
        o->name = e->io[i].name;
        o->dtype = e->io[i].dtype;
        o->nb_dims = e->io[i].nb_dims;
        for (int32_t d = 0; d < o->nb_dims; d++) {
            int64_t v = e->io[i].dims[d];
            if (v == -1 && src >= 0 && e->io[src].nb_dims == o->nb_dims)
                v = e->set[src][d];
            if (v < 0) {
                set_msg(msg, msg_cap, "output %s: its shape depends on input values; not supported", o->name);
                return OTRT_ERR_UNSUPPORTED;
            }
            o->dims[d] = v;
            size *= v;
        }
        o->size = (uint64_t)size;
        if (ensure_device(e, i, o->size) != 0)
            return OTRT_ERR_INTERNAL;
    }
    return OTRT_OK;
}

int otrt_engine_execute(otrt_engine *e, int32_t nb_outputs, const otrt_tensor *outputs, int32_t copy_outputs,
                        double *gpu_ms, char *msg, size_t msg_cap)
{
    *gpu_ms = 0;
    int32_t k = 0;
    for (int i = 0; i < e->nb; i++) {
        if (e->io[i].is_input)
            continue;
        int src = source(e, k++);
        if (src < 0 || e->device[src] == NULL || e->size[src] != e->size[i]) {
            set_msg(msg, msg_cap, "fake: output %s does not match the input it copies (set the inputs first)", e->io[i].name);
            return OTRT_ERR_INTERNAL;
        }
        memcpy(e->device[i], e->device[src], (size_t)e->size[i]);
    }
    *gpu_ms = 0.5;
    if (!copy_outputs)
        return OTRT_OK;
    for (int32_t j = 0; j < nb_outputs; j++) {
        int i = find_io(e, outputs[j].name);
        if (i < 0 || e->io[i].is_input || outputs[j].size != e->size[i]) {
            set_msg(msg, msg_cap, "output %s: not an output of this shape", outputs[j].name);
            return OTRT_ERR_ARGS;
        }
        memcpy(outputs[j].host, e->device[i], (size_t)outputs[j].size);
    }
    return OTRT_OK;
}

void otrt_engine_free(otrt_engine *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < e->nb; i++)
        if (e->device[i] != NULL) {
            free(e->device[i]);
            track(-1);
        }
    free(e);
    track(-1);
}

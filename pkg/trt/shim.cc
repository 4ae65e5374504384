//go:build tensorrt && !trtfake

// shim.cc implements shim.h over TensorRT's C++ API. It compiles against the TensorRT 10.x
// and 11.x headers (`make trt-check`); what differs is selected by NV_TENSORRT_MAJOR:
// 10.x still has the weakly-typed precision flags and the INT8 calibrators (implicit
// quantization), 11.x has neither and every network is strongly typed.
//
// Rules kept throughout: no exception leaves an extern "C" function, every TensorRT object
// is owned by a unique_ptr, and a failure is reported as a status plus a one-line message.

#include "shim.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 10 || NV_TENSORRT_MAJOR > 11
#error "optimctl's TensorRT shim supports the TensorRT 10.x and 11.x headers"
#endif

// Implicit quantization (precision flags, INT8 calibrators) exists up to TensorRT 10.
#define OTRT_IMPLICIT_QUANT (NV_TENSORRT_MAJOR < 11)

namespace nv = nvinfer1;

namespace {

void setMsg(char* msg, size_t cap, std::string const& s)
{
    if (msg == nullptr || cap == 0)
        return;
    size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
    std::memcpy(msg, s.data(), n);
    msg[n] = '\0';
}

// setExceptionMsg puts the exception being handled into msg: e.what() when it has one, else
// what happened "during" it. Call it only from inside a catch block.
void setExceptionMsg(char* msg, size_t cap, char const* during)
{
    try
    {
        throw;
    }
    catch (std::bad_alloc const&)
    {
        setMsg(msg, cap, std::string("out of memory ") + during);
    }
    catch (std::exception const& e)
    {
        setMsg(msg, cap, e.what());
    }
    catch (...)
    {
        setMsg(msg, cap, std::string("unknown exception ") + during);
    }
}

std::string str(char const* s)
{
    return s != nullptr ? std::string(s) : std::string();
}

// Logger forwards TensorRT's log to Go. TensorRT treats the logger as process-wide (the
// first one handed to a builder is the one used), so there is exactly one, never destroyed,
// and it routes to the ctx of the network currently open (one at a time, see gBusy).
class Logger final : public nv::ILogger
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        uintptr_t ctx = mCtx.load();
        if (ctx == 0 || static_cast<int32_t>(severity) > mLevel.load())
            return;
        otrt_go_log(ctx, static_cast<int32_t>(severity), const_cast<char*>(msg != nullptr ? msg : ""));
    }
    void attach(uintptr_t ctx, int32_t level)
    {
        mLevel.store(level);
        mCtx.store(ctx);
    }
    void detach()
    {
        mCtx.store(0);
    }
    // note logs a message of the shim itself through the same route.
    void note(Severity severity, std::string const& msg) noexcept
    {
        log(severity, msg.c_str());
    }

private:
    std::atomic<uintptr_t> mCtx{0};
    std::atomic<int32_t> mLevel{OTRT_LOG_WARNING};
};

Logger& logger()
{
    static Logger* l = new Logger; // leaked on purpose: TensorRT may log during exit
    return *l;
}

// gBusy admits one open network at a time, because the logger routes to a single ctx.
std::atomic<bool> gBusy{false};

// ONNX element types (tensor.DType numbering) of TensorRT's DataType; 0 = none.
int32_t onnxType(nv::DataType t)
{
    switch (t)
    {
    case nv::DataType::kFLOAT: return 1;
    case nv::DataType::kHALF: return 10;
    case nv::DataType::kINT8: return 3;
    case nv::DataType::kINT32: return 6;
    case nv::DataType::kBOOL: return 9;
    case nv::DataType::kUINT8: return 2;
    case nv::DataType::kFP8: return 17; // E4M3FN
    case nv::DataType::kBF16: return 16;
    case nv::DataType::kINT64: return 7;
    case nv::DataType::kINT4: return 22;
    case nv::DataType::kFP4: return 23; // E2M1
    case nv::DataType::kE8M0: return 24;
    }
    return 0;
}

// elementSize is the byte width of an ONNX element type a calibration batch can carry.
int64_t elementSize(int32_t onnx)
{
    switch (onnx)
    {
    case 1: case 6: return 4;
    case 10: case 16: return 2;
    case 2: case 3: case 9: case 17: return 1;
    case 7: return 8;
    default: return 0;
    }
}

nv::Dims toDims(int32_t nb, int64_t const* d)
{
    nv::Dims dims{};
    dims.nbDims = nb;
    for (int32_t i = 0; i < nb && i < nv::Dims::MAX_DIMS; ++i)
        dims.d[i] = d[i];
    return dims;
}

// Progress turns TensorRT's progress monitor into Go calls, so that a canceled context
// (Ctrl-C) stops a build that can take many minutes.
class Progress final : public nv::IProgressMonitor
{
public:
    explicit Progress(uintptr_t ctx) : mCtx(ctx) {}
    void phaseStart(char const* phase, char const* parent, int32_t nbSteps) noexcept override
    {
        otrt_go_progress(mCtx, OTRT_PHASE_START, const_cast<char*>(phase != nullptr ? phase : ""),
            const_cast<char*>(parent != nullptr ? parent : ""), nbSteps);
    }
    bool stepComplete(char const* phase, int32_t step) noexcept override
    {
        if (otrt_go_progress(mCtx, OTRT_PHASE_STEP, const_cast<char*>(phase != nullptr ? phase : ""),
                const_cast<char*>(""), step) == 0)
            mCanceled = true;
        return !mCanceled;
    }
    void phaseFinish(char const* phase) noexcept override
    {
        otrt_go_progress(mCtx, OTRT_PHASE_FINISH, const_cast<char*>(phase != nullptr ? phase : ""),
            const_cast<char*>(""), 0);
    }
    bool canceled() const
    {
        return mCanceled;
    }

private:
    uintptr_t mCtx;
    bool mCanceled{false};
};

#if OTRT_IMPLICIT_QUANT
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

// Calibrator is TensorRT 10's IInt8EntropyCalibrator2 with its data and cache in Go: each
// getBatch asks Go to fill host staging buffers (one per network input, at the calibration
// shape), copies them to device buffers and hands those to TensorRT. A failed callback
// ends calibration and is remembered, so that the build is failed rather than finished
// with scales from a partial data set.
class Calibrator final : public nv::IInt8EntropyCalibrator2
{
public:
    Calibrator(uintptr_t ctx, std::vector<otrt_tensor> tensors) : mCtx(ctx), mTensors(std::move(tensors)) {}
    ~Calibrator() noexcept override
    {
        for (void* p : mDevice)
            cudaFree(p);
        for (otrt_tensor& t : mTensors)
            std::free(t.host);
    }
    int32_t getBatchSize() const noexcept override
    {
        return 1; // explicit batch: the batch dimension is part of every input's dims
    }
    bool getBatch(void* bindings[], char const* names[], int32_t nbBindings) noexcept override
    {
        if (mFailed || !allocate())
            return false;
        int r = otrt_go_get_batch(mCtx, static_cast<int32_t>(mTensors.size()), mTensors.data());
        if (r < 0)
        {
            mFailed = true;
            return false;
        }
        if (r == 0)
            return false;
        for (size_t i = 0; i < mTensors.size(); ++i)
        {
            cudaError_t e = cudaMemcpy(mDevice[i], mTensors[i].host, mTensors[i].size, cudaMemcpyHostToDevice);
            if (e != cudaSuccess)
                return fail(std::string("calibration: copying input ") + mTensors[i].name + " to the GPU: "
                    + cudaGetErrorString(e));
        }
        for (int32_t b = 0; b < nbBindings; ++b)
        {
            bool found = false;
            for (size_t i = 0; i < mTensors.size() && !found; ++i)
            {
                if (std::strcmp(names[b], mTensors[i].name) == 0)
                {
                    bindings[b] = mDevice[i];
                    found = true;
                }
            }
            if (!found)
                return fail(std::string("calibration: TensorRT asked for input ") + str(names[b])
                    + ", which is not a network input");
        }
        return true;
    }
    void const* readCalibrationCache(std::size_t& length) noexcept override
    {
        void* data = nullptr;
        uint64_t size = 0;
        length = 0;
        if (otrt_go_read_calib_cache(mCtx, &data, &size) != 0)
        {
            mFailed = true;
            return nullptr;
        }
        if (size == 0)
            return nullptr;
        length = static_cast<std::size_t>(size);
        return data;
    }
    void writeCalibrationCache(void const* ptr, std::size_t length) noexcept override
    {
        if (otrt_go_write_calib_cache(mCtx, const_cast<void*>(ptr), length) != 0)
            mFailed = true;
    }
    bool failed() const
    {
        return mFailed;
    }

private:
    bool fail(std::string const& msg)
    {
        logger().note(nv::ILogger::Severity::kERROR, msg);
        mFailed = true;
        return false;
    }
    // allocate creates the staging buffers on first use, once CUDA is initialised by the builder.
    bool allocate()
    {
        if (!mDevice.empty())
            return true;
        for (otrt_tensor& t : mTensors)
        {
            void* d = nullptr;
            cudaError_t e = cudaMalloc(&d, t.size);
            if (e != cudaSuccess)
                return fail(std::string("calibration: cudaMalloc for input ") + t.name + ": " + cudaGetErrorString(e));
            mDevice.push_back(d);
            t.host = std::malloc(t.size);
            if (t.host == nullptr)
                return fail(std::string("calibration: out of host memory for input ") + t.name);
        }
        return true;
    }

    uintptr_t mCtx;
    std::vector<otrt_tensor> mTensors;
    std::vector<void*> mDevice;
    bool mFailed{false};
};

#pragma GCC diagnostic pop
#endif // OTRT_IMPLICIT_QUANT

} // namespace

struct otrt_network
{
    uintptr_t ctx{0};
    std::unique_ptr<nv::IBuilder> builder;
    std::unique_ptr<nv::INetworkDefinition> network;
    // The parser owns the weights the network points to: it must live until the build is
    // done, and (declared last) it is destroyed first.
    std::unique_ptr<nvonnxparser::IParser> parser;
    std::vector<std::string> names;
};

struct otrt_engine
{
    uintptr_t ctx{0};
    std::unique_ptr<nv::IRuntime> runtime;
    std::unique_ptr<nv::ICudaEngine> engine;
    std::unique_ptr<nv::IExecutionContext> context;
    std::vector<std::string> names; // io tensors in engine order
    std::vector<bool> isInput;
    std::vector<void*> device;     // one device buffer per io tensor, grown as shapes need
    std::vector<uint64_t> capacity;
    std::vector<uint64_t> size; // bytes of the current shapes
    cudaStream_t stream{nullptr};
    cudaEvent_t start{nullptr};
    cudaEvent_t stop{nullptr};

    ~otrt_engine()
    {
        context.reset(); // before its buffers and its engine
        for (void* p : device)
            if (p != nullptr)
                cudaFree(p);
        if (start != nullptr)
            cudaEventDestroy(start);
        if (stop != nullptr)
            cudaEventDestroy(stop);
        if (stream != nullptr)
            cudaStreamDestroy(stream);
    }

    int index(char const* name) const
    {
        for (size_t i = 0; i < names.size(); ++i)
            if (names[i] == name)
                return static_cast<int>(i);
        return -1;
    }

    // ensure gives io tensor i a device buffer of at least bytes and binds it.
    std::string ensure(size_t i, uint64_t bytes)
    {
        if (capacity[i] < bytes || device[i] == nullptr)
        {
            if (device[i] != nullptr)
                cudaFree(device[i]);
            device[i] = nullptr;
            capacity[i] = 0;
            cudaError_t e = cudaMalloc(&device[i], bytes > 0 ? bytes : 1);
            if (e != cudaSuccess)
                return "cudaMalloc for " + names[i] + ": " + cudaGetErrorString(e);
            capacity[i] = bytes;
        }
        if (!context->setTensorAddress(names[i].c_str(), device[i]))
            return "TensorRT refused the buffer of " + names[i];
        size[i] = bytes;
        return "";
    }
};

struct otrt_result
{
    std::unique_ptr<nv::IHostMemory> engine;
    std::unique_ptr<nv::IHostMemory> timingCache;
};

extern "C" {

int32_t otrt_library_version(void)
{
    return getInferLibVersion();
}

int32_t otrt_header_version(void)
{
    return NV_TENSORRT_VERSION;
}

int otrt_parse(char const* path, uintptr_t ctx, int32_t log_severity, int32_t strongly_typed, otrt_network** out,
    char* msg, size_t msg_cap)
{
    *out = nullptr;
    if (getInferLibVersion() / 10000 != NV_TENSORRT_MAJOR)
    {
        setMsg(msg, msg_cap,
            "libnvinfer " + std::to_string(getInferLibVersion()) + " does not match the TensorRT "
                + std::to_string(NV_TENSORRT_VERSION) + " headers this optimctl was built with");
        return OTRT_ERR_UNSUPPORTED;
    }
    bool expected = false;
    if (!gBusy.compare_exchange_strong(expected, true))
    {
        setMsg(msg, msg_cap, "another TensorRT network or engine is open in this process");
        return OTRT_ERR_ARGS;
    }
    std::FILE* f = std::fopen(path, "rb");
    if (f == nullptr)
    {
        setMsg(msg, msg_cap, std::string("cannot open ") + path + ": " + std::strerror(errno));
        gBusy.store(false);
        return OTRT_ERR_IO;
    }
    std::fclose(f);
    try
    {
        std::unique_ptr<otrt_network> n(new otrt_network);
        n->ctx = ctx;
        logger().attach(ctx, log_severity);
        n->builder.reset(nv::createInferBuilder(logger()));
        if (!n->builder)
            throw std::runtime_error("createInferBuilder failed (is a CUDA device visible?)");
        nv::NetworkDefinitionCreationFlags flags = 0;
#if NV_TENSORRT_MAJOR < 11
        if (strongly_typed != 0)
            flags |= 1U << static_cast<uint32_t>(nv::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#else
        (void) strongly_typed; // every 11.x network is strongly typed
#endif
        n->network.reset(n->builder->createNetworkV2(flags));
        if (!n->network)
            throw std::runtime_error("createNetworkV2 failed");
        n->parser.reset(nvonnxparser::createParser(*n->network, logger()));
        if (!n->parser)
            throw std::runtime_error("createParser failed");
        if (!n->parser->parseFromFile(path, log_severity))
        {
            int32_t nb = n->parser->getNbErrors();
            std::string summary = std::to_string(nb) + " ONNX parser error(s)";
            for (int32_t i = 0; i < nb; ++i)
            {
                nvonnxparser::IParserError const* e = n->parser->getError(i);
                if (e == nullptr)
                    continue;
                std::string name = str(e->nodeName()), op = str(e->nodeOperator()), desc = str(e->desc());
                otrt_go_parser_error(ctx, static_cast<int32_t>(e->code()), e->node(), const_cast<char*>(name.c_str()),
                    const_cast<char*>(op.c_str()), const_cast<char*>(desc.c_str()));
                if (i == 0)
                    summary += "; first: node " + std::to_string(e->node()) + " " + name + " (" + op + "): " + desc;
            }
            setMsg(msg, msg_cap, summary);
            n.reset();
            logger().detach();
            gBusy.store(false);
            return OTRT_ERR_PARSE;
        }
        for (int32_t i = 0; i < n->network->getNbInputs(); ++i)
            n->names.push_back(str(n->network->getInput(i)->getName()));
        *out = n.release();
        return OTRT_OK;
    }
    catch (...)
    {
        setExceptionMsg(msg, msg_cap, "while parsing");
    }
    logger().detach();
    gBusy.store(false);
    return OTRT_ERR_INTERNAL;
}

int32_t otrt_network_nb_inputs(otrt_network const* net)
{
    return net->network->getNbInputs();
}

int otrt_network_input(otrt_network const* net, int32_t index, otrt_input* out)
{
    if (index < 0 || index >= net->network->getNbInputs())
        return OTRT_ERR_ARGS;
    nv::ITensor* t = net->network->getInput(index);
    nv::Dims d = t->getDimensions();
    std::memset(out, 0, sizeof *out);
    out->name = net->names[static_cast<size_t>(index)].c_str();
    out->dtype = onnxType(t->getType());
    out->nb_dims = d.nbDims;
    for (int32_t i = 0; i < d.nbDims && i < OTRT_MAX_DIMS; ++i)
        out->dims[i] = d.d[i];
    out->is_shape_tensor = t->isShapeTensor() ? 1 : 0;
    return OTRT_OK;
}

int otrt_build(otrt_network* net, otrt_build_options const* o, otrt_result** out, char* msg, size_t msg_cap)
{
    *out = nullptr;
    try
    {
        uint32_t const implicitFlags = OTRT_FLAG_FP16 | OTRT_FLAG_INT8 | OTRT_FLAG_FP8 | OTRT_FLAG_CALIBRATE;
#if !OTRT_IMPLICIT_QUANT
        if ((o->flags & implicitFlags) != 0)
        {
            setMsg(msg, msg_cap,
                "TensorRT " + std::to_string(NV_TENSORRT_MAJOR)
                    + " has no --fp16/--int8/--fp8 builder flags or INT8 calibration; quantize the model explicitly "
                      "first (optimctl quantize --target tensorrt, or --mode fp16)");
            return OTRT_ERR_UNSUPPORTED;
        }
#else
        if ((o->flags & OTRT_FLAG_STRONGLY_TYPED) != 0 && (o->flags & implicitFlags) != 0)
        {
            setMsg(msg, msg_cap, "a strongly typed network takes its precisions from the model; drop --fp16/--int8/--fp8");
            return OTRT_ERR_ARGS;
        }
#endif
        nv::IBuilder& builder = *net->builder;
        std::unique_ptr<nv::IBuilderConfig> config(builder.createBuilderConfig());
        if (!config)
            throw std::runtime_error("createBuilderConfig failed");
        if (o->workspace_bytes > 0)
            config->setMemoryPoolLimit(nv::MemoryPoolType::kWORKSPACE, static_cast<std::size_t>(o->workspace_bytes));
        if ((o->flags & OTRT_FLAG_SPARSE_WEIGHTS) != 0)
            config->setFlag(nv::BuilderFlag::kSPARSE_WEIGHTS);
        if ((o->flags & OTRT_FLAG_REFIT) != 0)
            config->setFlag(nv::BuilderFlag::kREFIT);
        if ((o->flags & OTRT_FLAG_VERSION_COMPATIBLE) != 0)
            config->setFlag(nv::BuilderFlag::kVERSION_COMPATIBLE);
#if OTRT_IMPLICIT_QUANT
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        if ((o->flags & OTRT_FLAG_FP16) != 0)
            config->setFlag(nv::BuilderFlag::kFP16);
        if ((o->flags & OTRT_FLAG_INT8) != 0)
            config->setFlag(nv::BuilderFlag::kINT8);
        if ((o->flags & OTRT_FLAG_FP8) != 0)
            config->setFlag(nv::BuilderFlag::kFP8);
#pragma GCC diagnostic pop
#endif

        // One IOptimizationProfile per profile number (entries come grouped 0, 1, ...); the
        // first is also the calibration profile. All are owned by the builder.
        std::vector<nv::IOptimizationProfile*> profiles;
        for (int32_t i = 0; i < o->nb_profile; ++i)
        {
            otrt_profile_input const& p = o->profile[i];
            if (p.profile != static_cast<int32_t>(profiles.size()) - 1)
            {
                if (p.profile != static_cast<int32_t>(profiles.size()))
                {
                    setMsg(msg, msg_cap, "optimization profile entries out of order");
                    return OTRT_ERR_ARGS;
                }
                nv::IOptimizationProfile* next = builder.createOptimizationProfile();
                if (next == nullptr)
                    throw std::runtime_error("createOptimizationProfile failed");
                profiles.push_back(next);
            }
            nv::IOptimizationProfile* prof = profiles.back();
            if (!prof->setDimensions(p.name, nv::OptProfileSelector::kMIN, toDims(p.nb_dims, p.min))
                || !prof->setDimensions(p.name, nv::OptProfileSelector::kOPT, toDims(p.nb_dims, p.opt))
                || !prof->setDimensions(p.name, nv::OptProfileSelector::kMAX, toDims(p.nb_dims, p.max)))
            {
                setMsg(msg, msg_cap, std::string("input ") + p.name + ": TensorRT refused the dimensions of optimization profile "
                    + std::to_string(p.profile));
                return OTRT_ERR_ARGS;
            }
        }
        for (size_t k = 0; k < profiles.size(); ++k)
            if (config->addOptimizationProfile(profiles[k]) < 0)
            {
                setMsg(msg, msg_cap, "TensorRT refused optimization profile " + std::to_string(k) + " (see the log)");
                return OTRT_ERR_ARGS;
            }
        // A timing cache is always attached so that it can be returned; a cache from another
        // device or TensorRT version is dropped with a warning rather than failing the build.
        std::unique_ptr<nv::ITimingCache> timing(config->createTimingCache(o->timing_cache, o->timing_cache_size));
        if (!timing || !config->setTimingCache(*timing, false))
        {
            if (o->timing_cache_size > 0)
                logger().note(nv::ILogger::Severity::kWARNING,
                    "the timing cache does not match this TensorRT version or GPU; starting with an empty one");
            timing.reset(config->createTimingCache(nullptr, 0));
            if (!timing || !config->setTimingCache(*timing, false))
                throw std::runtime_error("could not create a timing cache");
        }

        Progress progress(net->ctx);
        config->setProgressMonitor(&progress);

#if OTRT_IMPLICIT_QUANT
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        std::unique_ptr<Calibrator> calibrator;
        if ((o->flags & OTRT_FLAG_CALIBRATE) != 0)
        {
            // Calibration runs at the profile's opt dimensions (TensorRT overwrites min and max
            // of the calibration profile with opt), or at the static dimensions.
            std::vector<otrt_tensor> tensors;
            for (int32_t i = 0; i < net->network->getNbInputs(); ++i)
            {
                nv::ITensor* in = net->network->getInput(i);
                otrt_tensor t{};
                t.name = net->names[static_cast<size_t>(i)].c_str();
                t.dtype = onnxType(in->getType());
                nv::Dims d = in->getDimensions();
                t.nb_dims = d.nbDims;
                for (int32_t k = 0; k < d.nbDims; ++k)
                    t.dims[k] = d.d[k];
                for (int32_t p = 0; p < o->nb_profile; ++p)
                    if (o->profile[p].profile == 0 && std::strcmp(o->profile[p].name, t.name) == 0)
                        for (int32_t k = 0; k < d.nbDims; ++k)
                            t.dims[k] = o->profile[p].opt[k];
                int64_t size = elementSize(t.dtype);
                for (int32_t k = 0; k < d.nbDims; ++k)
                    size *= t.dims[k];
                if (size <= 0)
                {
                    setMsg(msg, msg_cap, std::string("calibration: input ") + t.name
                        + " has no fixed calibration shape or an element type that cannot be calibrated");
                    return OTRT_ERR_ARGS;
                }
                t.size = static_cast<uint64_t>(size);
                tensors.push_back(t);
            }
            calibrator.reset(new Calibrator(net->ctx, std::move(tensors)));
            config->setInt8Calibrator(calibrator.get());
            if (!profiles.empty() && !config->setCalibrationProfile(profiles[0]))
            {
                setMsg(msg, msg_cap, "TensorRT refused the calibration profile");
                return OTRT_ERR_ARGS;
            }
        }
#pragma GCC diagnostic pop
#endif

        std::unique_ptr<nv::IHostMemory> plan(builder.buildSerializedNetwork(*net->network, *config));
#if OTRT_IMPLICIT_QUANT
        if (calibrator && calibrator->failed())
        {
            setMsg(msg, msg_cap, "calibration failed");
            return OTRT_ERR_CALIB;
        }
#endif
        if (progress.canceled())
        {
            setMsg(msg, msg_cap, "build canceled");
            return OTRT_ERR_CANCELED;
        }
        if (!plan || plan->size() == 0)
        {
            setMsg(msg, msg_cap, "TensorRT could not build the engine (the builder log above says why)");
            return OTRT_ERR_BUILD;
        }
        std::unique_ptr<otrt_result> r(new otrt_result);
        r->engine = std::move(plan);
        nv::ITimingCache const* used = config->getTimingCache();
        if (used != nullptr)
            r->timingCache.reset(used->serialize());
        *out = r.release();
        return OTRT_OK;
    }
    catch (...)
    {
        setExceptionMsg(msg, msg_cap, "while building");
    }
    return OTRT_ERR_INTERNAL;
}

void otrt_result_engine(otrt_result const* res, void const** data, uint64_t* size)
{
    *data = res->engine ? res->engine->data() : nullptr;
    *size = res->engine ? res->engine->size() : 0;
}

void otrt_result_timing_cache(otrt_result const* res, void const** data, uint64_t* size)
{
    *data = res->timingCache ? res->timingCache->data() : nullptr;
    *size = res->timingCache ? res->timingCache->size() : 0;
}

void otrt_result_free(otrt_result* res)
{
    delete res;
}

void otrt_network_free(otrt_network* net)
{
    if (net == nullptr)
        return;
    delete net; // parser, network, builder: may still log, so detach afterwards
    logger().detach();
    gBusy.store(false);
}

int otrt_engine_load(void const* plan, uint64_t size, uintptr_t ctx, int32_t log_severity, otrt_engine** out, char* msg,
    size_t msg_cap)
{
    *out = nullptr;
    if (getInferLibVersion() / 10000 != NV_TENSORRT_MAJOR)
    {
        setMsg(msg, msg_cap, "libnvinfer " + std::to_string(getInferLibVersion()) + " does not match the TensorRT "
            + std::to_string(NV_TENSORRT_VERSION) + " headers this optimctl was built with");
        return OTRT_ERR_UNSUPPORTED;
    }
    bool expected = false;
    if (!gBusy.compare_exchange_strong(expected, true))
    {
        setMsg(msg, msg_cap, "another TensorRT network or engine is open in this process");
        return OTRT_ERR_ARGS;
    }
    int status = OTRT_ERR_INTERNAL;
    try
    {
        std::unique_ptr<otrt_engine> e(new otrt_engine);
        e->ctx = ctx;
        logger().attach(ctx, log_severity);
        e->runtime.reset(nv::createInferRuntime(logger()));
        if (!e->runtime)
            throw std::runtime_error("createInferRuntime failed (is a CUDA device visible?)");
        e->engine.reset(e->runtime->deserializeCudaEngine(plan, static_cast<std::size_t>(size)));
        if (!e->engine)
        {
            status = OTRT_ERR_ARGS;
            throw std::runtime_error("not an engine TensorRT " + std::to_string(getInferLibVersion())
                + " can load on this GPU (built by another version, for another GPU, or not a plan; the log says which)");
        }
        e->context.reset(e->engine->createExecutionContext());
        if (!e->context)
            throw std::runtime_error("createExecutionContext failed");
        int32_t nb = e->engine->getNbIOTensors();
        for (int32_t i = 0; i < nb; ++i)
        {
            char const* name = e->engine->getIOTensorName(i);
            e->names.push_back(str(name));
            e->isInput.push_back(e->engine->getTensorIOMode(name) == nv::TensorIOMode::kINPUT);
            if (e->engine->getTensorLocation(name) != nv::TensorLocation::kDEVICE)
            {
                status = OTRT_ERR_UNSUPPORTED;
                throw std::runtime_error("tensor " + str(name) + " lives on the host (a shape tensor); not supported");
            }
        }
        e->device.assign(e->names.size(), nullptr);
        e->capacity.assign(e->names.size(), 0);
        e->size.assign(e->names.size(), 0);
        cudaError_t ce = cudaStreamCreate(&e->stream);
        if (ce == cudaSuccess)
            ce = cudaEventCreate(&e->start);
        if (ce == cudaSuccess)
            ce = cudaEventCreate(&e->stop);
        if (ce != cudaSuccess)
            throw std::runtime_error(std::string("CUDA: ") + cudaGetErrorString(ce));
        *out = e.release();
        return OTRT_OK;
    }
    catch (...)
    {
        setExceptionMsg(msg, msg_cap, "while loading the engine");
    }
    logger().detach();
    gBusy.store(false);
    return status;
}

int32_t otrt_engine_nb_io(otrt_engine const* e)
{
    return static_cast<int32_t>(e->names.size());
}

int otrt_engine_io(otrt_engine const* e, int32_t index, otrt_io* out)
{
    if (index < 0 || static_cast<size_t>(index) >= e->names.size())
        return OTRT_ERR_ARGS;
    char const* name = e->names[static_cast<size_t>(index)].c_str();
    nv::Dims d = e->engine->getTensorShape(name);
    std::memset(out, 0, sizeof *out);
    out->name = name;
    out->is_input = e->isInput[static_cast<size_t>(index)] ? 1 : 0;
    out->dtype = onnxType(e->engine->getTensorDataType(name));
    out->nb_dims = d.nbDims;
    for (int32_t i = 0; i < d.nbDims && i < OTRT_MAX_DIMS; ++i)
        out->dims[i] = d.d[i];
    return OTRT_OK;
}

int otrt_engine_set_inputs(otrt_engine* e, int32_t nb_inputs, otrt_tensor const* inputs, int32_t nb_outputs,
    otrt_tensor* outputs, char* msg, size_t msg_cap)
{
    try
    {
        int32_t want = 0;
        for (bool in : e->isInput)
            want += in ? 1 : 0;
        if (nb_inputs != want || nb_outputs != static_cast<int32_t>(e->names.size()) - want)
        {
            setMsg(msg, msg_cap, "the engine has " + std::to_string(want) + " inputs and "
                + std::to_string(e->names.size() - static_cast<size_t>(want)) + " outputs");
            return OTRT_ERR_ARGS;
        }
        // The first profile whose [min, max] holds every input shape; profile 0 when none
        // does, so that setInputShape below names the input out of range.
        int32_t chosen = 0;
        for (int32_t p = 0; p < e->engine->getNbOptimizationProfiles(); ++p)
        {
            bool fits = true;
            for (int32_t k = 0; fits && k < nb_inputs; ++k)
            {
                otrt_tensor const& t = inputs[k];
                nv::Dims lo = e->engine->getProfileShape(t.name, p, nv::OptProfileSelector::kMIN);
                nv::Dims hi = e->engine->getProfileShape(t.name, p, nv::OptProfileSelector::kMAX);
                if (lo.nbDims < 0) // not a profiled input: static, checked by setInputShape
                    continue;
                fits = lo.nbDims == t.nb_dims && hi.nbDims == t.nb_dims;
                for (int32_t d = 0; fits && d < t.nb_dims; ++d)
                    fits = lo.d[d] <= t.dims[d] && t.dims[d] <= hi.d[d];
            }
            if (fits)
            {
                chosen = p;
                break;
            }
        }
        if (chosen != e->context->getOptimizationProfile())
        {
            if (!e->context->setOptimizationProfileAsync(chosen, e->stream))
            {
                setMsg(msg, msg_cap, "TensorRT refused optimization profile " + std::to_string(chosen));
                return OTRT_ERR_INTERNAL;
            }
            cudaError_t ce = cudaStreamSynchronize(e->stream);
            if (ce != cudaSuccess)
            {
                setMsg(msg, msg_cap, std::string("CUDA: ") + cudaGetErrorString(ce));
                return OTRT_ERR_INTERNAL;
            }
        }
        for (int32_t k = 0; k < nb_inputs; ++k)
        {
            otrt_tensor const& t = inputs[k];
            int i = e->index(t.name);
            if (i < 0 || !e->isInput[static_cast<size_t>(i)])
            {
                setMsg(msg, msg_cap, std::string(t.name) + " is not an input of the engine");
                return OTRT_ERR_ARGS;
            }
            if (t.dtype != onnxType(e->engine->getTensorDataType(t.name)))
            {
                setMsg(msg, msg_cap, std::string("input ") + t.name + ": element type differs from the engine's");
                return OTRT_ERR_ARGS;
            }
            if (!e->context->setInputShape(t.name, toDims(t.nb_dims, t.dims)))
            {
                setMsg(msg, msg_cap, std::string("input ") + t.name + ": shape outside the engine's optimization profile");
                return OTRT_ERR_ARGS;
            }
            std::string err = e->ensure(static_cast<size_t>(i), t.size);
            if (err.empty())
            {
                cudaError_t ce = cudaMemcpy(e->device[static_cast<size_t>(i)], t.host, t.size, cudaMemcpyHostToDevice);
                if (ce != cudaSuccess)
                    err = std::string("copying input ") + t.name + " to the GPU: " + cudaGetErrorString(ce);
            }
            if (!err.empty())
            {
                setMsg(msg, msg_cap, err);
                return OTRT_ERR_INTERNAL;
            }
        }
        int32_t k = 0;
        for (size_t i = 0; i < e->names.size(); ++i)
        {
            if (e->isInput[i])
                continue;
            char const* name = e->names[i].c_str();
            nv::Dims d = e->context->getTensorShape(name);
            otrt_tensor& o = outputs[k++];
            std::memset(o.dims, 0, sizeof o.dims);
            o.name = name;
            o.dtype = onnxType(e->engine->getTensorDataType(name));
            o.nb_dims = d.nbDims;
            int64_t bytes = elementSize(o.dtype);
            for (int32_t j = 0; j < d.nbDims; ++j)
            {
                o.dims[j] = d.d[j];
                bytes *= d.d[j];
            }
            if (d.nbDims < 0 || bytes < 0 || elementSize(o.dtype) == 0)
            {
                setMsg(msg, msg_cap, std::string("output ") + name
                    + ": its shape depends on input values, or its element type cannot be copied; not supported");
                return OTRT_ERR_UNSUPPORTED;
            }
            o.size = static_cast<uint64_t>(bytes);
            std::string err = e->ensure(i, o.size);
            if (!err.empty())
            {
                setMsg(msg, msg_cap, err);
                return OTRT_ERR_INTERNAL;
            }
        }
        return OTRT_OK;
    }
    catch (...)
    {
        setMsg(msg, msg_cap, "exception while setting inputs");
    }
    return OTRT_ERR_INTERNAL;
}

int otrt_engine_execute(otrt_engine* e, int32_t nb_outputs, otrt_tensor const* outputs, int32_t copy_outputs,
    double* gpu_ms, char* msg, size_t msg_cap)
{
    *gpu_ms = 0;
    cudaEventRecord(e->start, e->stream);
    if (!e->context->enqueueV3(e->stream))
    {
        cudaStreamSynchronize(e->stream);
        setMsg(msg, msg_cap, "enqueueV3 failed (the TensorRT log says why)");
        return OTRT_ERR_INTERNAL;
    }
    cudaEventRecord(e->stop, e->stream);
    cudaError_t ce = cudaStreamSynchronize(e->stream);
    if (ce != cudaSuccess)
    {
        setMsg(msg, msg_cap, std::string("running the engine: ") + cudaGetErrorString(ce));
        return OTRT_ERR_INTERNAL;
    }
    float ms = 0;
    if (cudaEventElapsedTime(&ms, e->start, e->stop) == cudaSuccess)
        *gpu_ms = ms;
    if (copy_outputs == 0)
        return OTRT_OK;
    for (int32_t k = 0; k < nb_outputs; ++k)
    {
        int i = e->index(outputs[k].name);
        if (i < 0 || e->isInput[static_cast<size_t>(i)] || outputs[k].size != e->size[static_cast<size_t>(i)])
        {
            setMsg(msg, msg_cap, std::string("output ") + outputs[k].name + ": not an output of this shape");
            return OTRT_ERR_ARGS;
        }
        ce = cudaMemcpy(outputs[k].host, e->device[static_cast<size_t>(i)], outputs[k].size, cudaMemcpyDeviceToHost);
        if (ce != cudaSuccess)
        {
            setMsg(msg, msg_cap, std::string("copying output ") + outputs[k].name + ": " + cudaGetErrorString(ce));
            return OTRT_ERR_INTERNAL;
        }
    }
    return OTRT_OK;
}

void otrt_engine_free(otrt_engine* e)
{
    if (e == nullptr)
        return;
    delete e;
    logger().detach();
    gBusy.store(false);
}

} // extern "C"

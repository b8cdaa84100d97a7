// How the test drivers reach a plugin library: dlopen and the exported C entry points only,
// as TensorRT (getCreators, setLoggerFinder) and ctypes users (ccnet_cca_*) do.
#pragma once

#include "cca_kernel_codes.h"
#include "cca_op_contract.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace ccnet::test
{
using GetCreatorsFn = nvinfer1::IPluginCreatorInterface* const* (*) (int32_t&);
using SetLoggerFinderFn = void (*)(nvinfer1::ILoggerFinder*);
using WorkspaceSizeFn = size_t (*)(int, int, int);
using ForwardFn = int (*)(void const*, void const*, void const*, void*, int, int, int, int, int, int, void*, size_t,
    cudaStream_t);

struct Library
{
    void* handle{};
    GetCreatorsFn getCreators{};
    SetLoggerFinderFn setLoggerFinder{};
    WorkspaceSizeFn workspaceSize{};
    ForwardFn forward{};
};

// Exits with a message when the library cannot be loaded or lacks an entry point.
Library openLibrary(char const* path);
nvinfer1::IPluginCreatorV3One* findCreator(Library const& lib);

// Records what the library reports through setLoggerFinder(); with `echo`, warnings and errors
// also go to stderr as "[logged] <message>".
class CapturingLogger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override;
    bool contains(std::string const& text, size_t fromMessage = 0) const;
    std::vector<std::string> messages;
    bool echo{true};
};

class TestLoggerFinder : public nvinfer1::ILoggerFinder
{
public:
    nvinfer1::ILogger* findLogger() override { return &logger; }
    CapturingLogger logger;
};

// The contract's fields as the ONNX parser passes string attributes: the length counts the
// terminating NUL (onnx-tensorrt copyField appends it).
std::vector<nvinfer1::PluginField> contractFields();
nvinfer1::PluginFieldCollection collectionOf(std::vector<nvinfer1::PluginField> const& fields);

struct PluginDeleter
{
    void operator()(nvinfer1::IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<nvinfer1::IPluginV3, PluginDeleter>;

PluginPtr createValid(nvinfer1::IPluginCreatorV3One* creator, nvinfer1::TensorRTPhase phase);
nvinfer1::IPluginV3OneCore* coreOf(nvinfer1::IPluginV3* p);
nvinfer1::IPluginV3OneBuild* buildOf(nvinfer1::IPluginV3* p);
nvinfer1::IPluginV3OneRuntime* runtimeOf(nvinfer1::IPluginV3* p);

// Device memory (host memory in the CUDA CPU mode), freed when the buffer goes out of scope.
struct DeviceBuffer
{
    void* pointer{};
    size_t bytes{};
    DeviceBuffer() = default;
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;
    ~DeviceBuffer() { cudaFree(pointer); }
    // Allocates max(size, 1) bytes (a 0-byte tensor still gets a pointer) and records `size`;
    // false, with the CUDA error on stderr, when cudaMalloc fails.
    bool allocate(size_t size);
};
} // namespace ccnet::test

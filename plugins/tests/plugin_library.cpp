#include "plugin_library.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ccnet::test
{
namespace
{
template <typename Fn>
Fn symbol(void* handle, char const* name)
{
    void* address = dlsym(handle, name);
    if (!address)
    {
        std::fprintf(stderr, "library does not export %s\n", name);
        std::exit(1);
    }
    return reinterpret_cast<Fn>(address);
}
} // namespace

Library openLibrary(char const* path)
{
    Library lib;
    lib.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib.handle)
    {
        std::fprintf(stderr, "dlopen(%s) failed: %s\n", path, dlerror());
        std::exit(1);
    }
    lib.getCreators = symbol<GetCreatorsFn>(lib.handle, "getCreators");
    lib.setLoggerFinder = symbol<SetLoggerFinderFn>(lib.handle, "setLoggerFinder");
    lib.workspaceSize = symbol<WorkspaceSizeFn>(lib.handle, "ccnet_cca_workspace_size");
    lib.forward = symbol<ForwardFn>(lib.handle, "ccnet_cca_forward");
    return lib;
}

nvinfer1::IPluginCreatorV3One* findCreator(Library const& lib)
{
    int32_t nbCreators = -1;
    nvinfer1::IPluginCreatorInterface* const* creators = lib.getCreators(nbCreators);
    if (!creators || nbCreators < 1)
        return nullptr;
    for (int32_t i = 0; i < nbCreators; ++i)
    {
        nvinfer1::InterfaceInfo const info = creators[i]->getInterfaceInfo();
        if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0)
            continue;
        auto* creator = static_cast<nvinfer1::IPluginCreatorV3One*>(creators[i]);
        if (std::strcmp(creator->getPluginName(), contract::kPluginName) == 0)
            return creator;
    }
    return nullptr;
}

void CapturingLogger::log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept
{
    messages.push_back(msg ? msg : "");
    if (echo && severity <= Severity::kWARNING)
        std::fprintf(stderr, "[logged] %s\n", msg ? msg : "");
}

bool CapturingLogger::contains(std::string const& text, size_t fromMessage) const
{
    for (size_t i = fromMessage; i < messages.size(); ++i)
    {
        if (messages[i].find(text) != std::string::npos)
            return true;
    }
    return false;
}

std::vector<nvinfer1::PluginField> contractFields()
{
    std::vector<nvinfer1::PluginField> fields;
    for (auto const& spec : contract::kFields)
        fields.emplace_back(spec.name, spec.value, spec.type, static_cast<int32_t>(std::strlen(spec.value) + 1));
    return fields;
}

nvinfer1::PluginFieldCollection collectionOf(std::vector<nvinfer1::PluginField> const& fields)
{
    nvinfer1::PluginFieldCollection fc;
    fc.nbFields = static_cast<int32_t>(fields.size());
    fc.fields = fields.data();
    return fc;
}

PluginPtr createValid(nvinfer1::IPluginCreatorV3One* creator, nvinfer1::TensorRTPhase phase)
{
    if (!creator)
        return nullptr;
    auto fields = contractFields();
    auto fc = collectionOf(fields);
    return PluginPtr(creator->createPlugin("cca_test", &fc, phase));
}

nvinfer1::IPluginV3OneCore* coreOf(nvinfer1::IPluginV3* p)
{
    return static_cast<nvinfer1::IPluginV3OneCore*>(p->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE));
}

nvinfer1::IPluginV3OneBuild* buildOf(nvinfer1::IPluginV3* p)
{
    return static_cast<nvinfer1::IPluginV3OneBuild*>(p->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
}

nvinfer1::IPluginV3OneRuntime* runtimeOf(nvinfer1::IPluginV3* p)
{
    return static_cast<nvinfer1::IPluginV3OneRuntime*>(
        p->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
}

bool DeviceBuffer::allocate(size_t size)
{
    bytes = size;
    cudaError_t const error = cudaMalloc(&pointer, std::max<size_t>(size, 1));
    if (error != cudaSuccess)
        std::fprintf(stderr, "cudaMalloc(%zu) failed: %s\n", size, cudaGetErrorString(error));
    return error == cudaSuccess;
}
} // namespace ccnet::test

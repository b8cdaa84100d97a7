#include "cca_plugin.h"

#include "cca_kernels.h"
#include "plugin_logging.h"
#include "plugin_validation.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <string>

namespace ccnet
{
namespace
{
using nvinfer1::DataType;
using nvinfer1::TensorFormat;
using Severity = nvinfer1::ILogger::Severity;
using Plugin = CrissCrossAttentionPlugin;

constexpr int32_t kOutputIndex = Plugin::kNbInputs; // position of the output among all tensors
constexpr int32_t kNbTensors = Plugin::kNbInputs + Plugin::kNbOutputs;
constexpr int64_t kUnknownDim = -1;                  // a dimension TensorRT leaves open at build time

bool isSupportedType(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

// The plugin's four tensors (query, key, value, output) as one TensorRT call describes them.
struct TensorSet
{
    nvinfer1::Dims dims[kNbTensors]{};
    DataType types[kNbTensors]{};
    bool typesKnown{false};
};

enum class Dimensions
{
    kMayBeOpen, // build time: -1 stands for a dimension fixed only at run time
    kConcrete   // run time, or the bounds of a dynamic range
};

void validateArity(bool present, int32_t nbInputs, int32_t nbOutputs)
{
    CCNET_VALIDATE(present && nbInputs == Plugin::kNbInputs && nbOutputs == Plugin::kNbOutputs,
        "expected 3 inputs (query, key, value) and 1 output");
}

DataType typeOf(nvinfer1::PluginTensorDesc const& desc)
{
    return desc.type;
}
DataType typeOf(nvinfer1::DynamicPluginTensorDesc const& desc)
{
    return desc.desc.type;
}

template <typename Desc, typename GetDims>
TensorSet collectTensors(Desc const* in, int32_t nbInputs, Desc const* out, int32_t nbOutputs, GetDims getDims)
{
    validateArity(in && out, nbInputs, nbOutputs);
    TensorSet set;
    for (int32_t i = 0; i < kNbTensors; ++i)
    {
        Desc const& desc = i < Plugin::kNbInputs ? in[i] : out[i - Plugin::kNbInputs];
        set.dims[i] = getDims(desc);
        set.types[i] = typeOf(desc);
    }
    set.typesKnown = true;
    return set;
}

TensorSet runtimeTensors(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
    int32_t nbOutputs)
{
    return collectTensors(in, nbInputs, out, nbOutputs, [](auto const& d) { return d.dims; });
}

// The dimensions TensorRT will run with: possibly open (-1) at build time.
TensorSet configuredTensors(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs)
{
    return collectTensors(in, nbInputs, out, nbOutputs, [](auto const& d) { return d.desc.dims; });
}

// The upper bounds of the dynamic ranges (the optimisation profile's max shapes).
TensorSet largestTensors(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs)
{
    return collectTensors(in, nbInputs, out, nbOutputs, [](auto const& d) { return d.max; });
}

// Output shapes are derived from the inputs, so the output is taken to be value-shaped.
TensorSet symbolicTensors(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, int32_t nbOutputs)
{
    validateArity(inputs != nullptr, nbInputs, nbOutputs);
    TensorSet set;
    for (int32_t i = 0; i < Plugin::kNbInputs; ++i)
    {
        set.dims[i].nbDims = inputs[i].nbDims;
        for (int32_t j = 0; j < inputs[i].nbDims && j < nvinfer1::Dims::MAX_DIMS; ++j)
        {
            nvinfer1::IDimensionExpr const* e = inputs[i].d[j];
            set.dims[i].d[j] = e && e->isConstant() ? e->getConstantValue() : kUnknownDim;
        }
    }
    set.dims[kOutputIndex] = set.dims[Plugin::kValueIndex];
    return set;
}

// The one check of the plugin's tensors; every entry point that receives them calls it.
void validateTensors(TensorSet const& t, Dimensions dimensions)
{
    for (auto const& dims : t.dims)
        CCNET_VALIDATE(dims.nbDims == 4, "query, key, value and output must all be 4-D (N x C x H x W)");
    bool const concrete = dimensions == Dimensions::kConcrete;
    for (auto const& dims : t.dims)
    {
        for (int32_t j = 0; j < 4; ++j)
        {
            int64_t const d = dims.d[j];
            bool const inRange = d >= 1 && d <= std::numeric_limits<int32_t>::max();
            CCNET_VALIDATE(inRange || (!concrete && d == kUnknownDim), "every dimension must be between 1 and 2^31-1");
        }
    }
    auto agree = [](int64_t a, int64_t b) { return a == kUnknownDim || b == kUnknownDim || a == b; };
    auto const& q = t.dims[Plugin::kQueryIndex].d;
    auto const& k = t.dims[Plugin::kKeyIndex].d;
    auto const& v = t.dims[Plugin::kValueIndex].d;
    auto const& o = t.dims[kOutputIndex].d;
    for (int32_t j = 0; j < 4; ++j)
        CCNET_VALIDATE(agree(q[j], k[j]), "query and key must have the same shape");
    for (int32_t j : {0, 2, 3})
        CCNET_VALIDATE(agree(q[j], v[j]), "query/key and value must agree in N, H and W");
    for (int32_t j = 0; j < 4; ++j)
        CCNET_VALIDATE(agree(o[j], v[j]), "output shape must equal value shape");
    if (t.typesKnown)
    {
        bool sameSupportedType = isSupportedType(t.types[0]);
        for (DataType type : t.types)
            sameSupportedType = sameSupportedType && type == t.types[0];
        CCNET_VALIDATE(sameSupportedType, "all tensors must be FP32, or all FP16");
    }
    if (concrete)
    {
        int const status = ccnet_cca_check_sizes(static_cast<int>(v[0]), static_cast<int>(q[1]), static_cast<int>(v[1]),
            static_cast<int>(v[2]), static_cast<int>(v[3]));
        CCNET_VALIDATE(status == CCNET_CCA_OK,
            "the kernels cannot run N x Cq x C x H x W = " + std::to_string(v[0]) + " x " + std::to_string(q[1]) + " x "
                + std::to_string(v[1]) + " x " + std::to_string(v[2]) + " x " + std::to_string(v[3]) + ": "
                + ccnet_cca_status_name(status));
    }
}

// Workspace for concrete, validated tensors: never 0 (ccnet_cca_check_sizes rejects sizes whose
// workspace overflows).
size_t workspaceFor(TensorSet const& t)
{
    auto const& v = t.dims[Plugin::kValueIndex].d;
    return ccnet_cca_workspace_size(static_cast<int>(v[0]), static_cast<int>(v[2]), static_cast<int>(v[3]));
}

void reportFailure(char const* method, std::exception const& e) noexcept
{
    logPluginMessage(Severity::kERROR, std::string("CrissCrossAttention ") + method + ": " + e.what());
}
} // namespace

CrissCrossAttentionPlugin::CrissCrossAttentionPlugin()
{
    buildSerializedFields();
}

CrissCrossAttentionPlugin::CrissCrossAttentionPlugin(CrissCrossAttentionPlugin const& other)
    : nvinfer1::IPluginV3()
    , nvinfer1::IPluginV3OneCore()
    , nvinfer1::IPluginV3OneBuild()
    , nvinfer1::IPluginV3OneRuntime()
    , mConfiguredWorkspaceBytes(other.mConfiguredWorkspaceBytes)
{
    // mSerializedCollection must point into this object's vector, never the source's.
    buildSerializedFields();
}

void CrissCrossAttentionPlugin::buildSerializedFields()
{
    mSerializedFields.clear();
    for (auto const& field : contract::kFields)
    {
        // String fields count their terminating NUL, as the ONNX parser passes string
        // attributes (onnx-tensorrt copyField appends '\0' and includes it in the length).
        mSerializedFields.emplace_back(field.name, field.value, field.type,
            static_cast<int32_t>(std::strlen(field.value) + 1));
    }
    mSerializedCollection.nbFields = static_cast<int32_t>(mSerializedFields.size());
    mSerializedCollection.fields = mSerializedFields.data();
}

nvinfer1::IPluginCapability* CrissCrossAttentionPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* CrissCrossAttentionPlugin::clone() noexcept
{
    try
    {
        return new CrissCrossAttentionPlugin(*this);
    }
    catch (std::exception const& e)
    {
        reportFailure("clone", e);
        return nullptr;
    }
}

char const* CrissCrossAttentionPlugin::getPluginName() const noexcept
{
    return contract::kPluginName;
}

char const* CrissCrossAttentionPlugin::getPluginVersion() const noexcept
{
    return contract::kPluginVersion;
}

char const* CrissCrossAttentionPlugin::getPluginNamespace() const noexcept
{
    return contract::kPluginNamespace;
}

int32_t CrissCrossAttentionPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        validateTensors(configuredTensors(in, nbInputs, out, nbOutputs), Dimensions::kMayBeOpen);
        TensorSet const largest = largestTensors(in, nbInputs, out, nbOutputs);
        validateTensors(largest, Dimensions::kConcrete);
        // TensorRT may configure one plugin object for several optimisation profiles.
        mConfiguredWorkspaceBytes = std::max(mConfiguredWorkspaceBytes, workspaceFor(largest));
        return 0;
    }
    catch (std::exception const& e)
    {
        reportFailure("configurePlugin", e);
        return -1;
    }
}

int32_t CrissCrossAttentionPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        validateArity(outputTypes && inputTypes, nbInputs, nbOutputs);
        outputTypes[0] = inputTypes[kValueIndex];
        return 0;
    }
    catch (std::exception const& e)
    {
        reportFailure("getOutputDataTypes", e);
        return -1;
    }
}

int32_t CrissCrossAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    try
    {
        CCNET_VALIDATE(outputs != nullptr, "no output shape to fill in");
        validateTensors(symbolicTensors(inputs, nbInputs, nbOutputs), Dimensions::kMayBeOpen);
        // The output is a re-weighting of value: same N, C, H, W expressions, no new arithmetic.
        outputs[0] = inputs[kValueIndex];
        return 0;
    }
    catch (std::exception const& e)
    {
        reportFailure("getOutputShapes", e);
        return -1;
    }
}

bool CrissCrossAttentionPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (!inOut || nbInputs != kNbInputs || nbOutputs != kNbOutputs || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    auto const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR || !isSupportedType(desc.type))
        return false;
    // TensorRT asks position by position; every tensor must share the first one's type.
    return pos == 0 || desc.type == inOut[0].desc.type;
}

int32_t CrissCrossAttentionPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

size_t CrissCrossAttentionPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    try
    {
        TensorSet const largest = largestTensors(inputs, nbInputs, outputs, nbOutputs);
        validateTensors(largest, Dimensions::kConcrete);
        return workspaceFor(largest);
    }
    catch (std::exception const& e)
    {
        reportFailure("getWorkspaceSize", e);
        return 0;
    }
}

int32_t CrissCrossAttentionPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        validateTensors(runtimeTensors(in, nbInputs, out, nbOutputs), Dimensions::kConcrete);
        return 0;
    }
    catch (std::exception const& e)
    {
        reportFailure("onShapeChange", e);
        return -1;
    }
}

int32_t CrissCrossAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    try
    {
        CCNET_VALIDATE(inputs && outputs, "no input or output pointers");
        TensorSet const tensors = runtimeTensors(inputDesc, kNbInputs, outputDesc, kNbOutputs);
        validateTensors(tensors, Dimensions::kConcrete);
        auto const& q = tensors.dims[kQueryIndex].d;
        auto const& v = tensors.dims[kValueIndex].d;
        int const n = static_cast<int>(v[0]);
        int const h = static_cast<int>(v[2]);
        int const w = static_cast<int>(v[3]);
        size_t const needed = ccnet_cca_workspace_size(n, h, w);
        // TensorRT hands enqueue at least the workspace getWorkspaceSize() declared for the dynamic
        // ranges of the active profile, and configurePlugin saw those ranges: a configured plugin
        // passes the largest workspace it declared, so the kernels refuse shapes outside every
        // configured range instead of overrunning the buffer. A plugin deserialized from an engine
        // is never configured (TensorRT calls only onShapeChange); it can only rely on TensorRT
        // keeping the shapes inside the active profile, i.e. on what these shapes need.
        size_t const available = mConfiguredWorkspaceBytes != 0 ? mConfiguredWorkspaceBytes : needed;
        int const dtype = tensors.types[0] == DataType::kHALF ? CCNET_CCA_FP16 : CCNET_CCA_FP32;
        int const status = ccnet_cca_forward(inputs[kQueryIndex], inputs[kKeyIndex], inputs[kValueIndex], outputs[0],
            n, static_cast<int>(q[1]), static_cast<int>(v[1]), h, w, dtype, workspace, available, stream);
        if (status != CCNET_CCA_OK)
        {
            std::string detail;
            if (status == CCNET_CCA_WORKSPACE_TOO_SMALL)
                detail = " (these shapes need " + std::to_string(needed) + " bytes, the plugin was configured for "
                    + std::to_string(available) + ")";
            logPluginMessage(Severity::kERROR,
                std::string("CrissCrossAttention enqueue: ccnet_cca_forward failed: ") + ccnet_cca_status_name(status)
                    + detail);
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        reportFailure("enqueue", e);
        return -1;
    }
}

nvinfer1::IPluginV3* CrissCrossAttentionPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    // No per-context resources: each execution context gets an independent copy.
    return clone();
}

nvinfer1::PluginFieldCollection const* CrissCrossAttentionPlugin::getFieldsToSerialize() noexcept
{
    return &mSerializedCollection;
}
} // namespace ccnet

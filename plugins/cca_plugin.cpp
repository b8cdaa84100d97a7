#include "cca_plugin.h"

#include "cca_kernels.h"
#include "plugin_logging.h"

#include <cstring>
#include <limits>
#include <new>
#include <string>

namespace ccnet
{
namespace
{
using nvinfer1::DataType;
using nvinfer1::TensorFormat;
using Severity = nvinfer1::ILogger::Severity;

bool isSupportedType(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

bool fitsInt(int64_t value)
{
    return value >= 1 && value <= std::numeric_limits<int32_t>::max();
}

// Checks the runtime shapes and types the kernels rely on; on failure says why.
bool checkRuntimeDescs(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
    int32_t nbOutputs, std::string& why)
{
    if (!in || !out || nbInputs != CrissCrossAttentionPlugin::kNbInputs
        || nbOutputs != CrissCrossAttentionPlugin::kNbOutputs)
    {
        why = "expected 3 inputs (query, key, value) and 1 output";
        return false;
    }
    auto const& q = in[CrissCrossAttentionPlugin::kQueryIndex].dims;
    auto const& k = in[CrissCrossAttentionPlugin::kKeyIndex].dims;
    auto const& v = in[CrissCrossAttentionPlugin::kValueIndex].dims;
    if (q.nbDims != 4 || k.nbDims != 4 || v.nbDims != 4 || out[0].dims.nbDims != 4)
    {
        why = "query, key, value and output must all be 4-D (N x C x H x W)";
        return false;
    }
    for (int i = 0; i < 4; ++i)
    {
        if (q.d[i] != k.d[i])
        {
            why = "query and key must have the same shape";
            return false;
        }
        if (!fitsInt(q.d[i]) || !fitsInt(v.d[i]))
        {
            why = "every dimension must be between 1 and 2^31-1";
            return false;
        }
        if (out[0].dims.d[i] != v.d[i])
        {
            why = "output shape must equal value shape";
            return false;
        }
    }
    if (q.d[0] != v.d[0] || q.d[2] != v.d[2] || q.d[3] != v.d[3])
    {
        why = "query/key and value must agree in N, H and W";
        return false;
    }
    DataType const type = in[0].type;
    if (!isSupportedType(type) || in[1].type != type || in[2].type != type || out[0].type != type)
    {
        why = "all tensors must be FP32, or all FP16";
        return false;
    }
    return true;
}
} // namespace

CrissCrossAttentionPlugin::CrissCrossAttentionPlugin()
{
    buildSerializedFields();
}

CrissCrossAttentionPlugin::CrissCrossAttentionPlugin(CrissCrossAttentionPlugin const& /*other*/)
    : nvinfer1::IPluginV3()
    , nvinfer1::IPluginV3OneCore()
    , nvinfer1::IPluginV3OneBuild()
    , nvinfer1::IPluginV3OneRuntime()
{
    // mSerializedCollection must point into this object's vector, never the source's.
    buildSerializedFields();
}

void CrissCrossAttentionPlugin::buildSerializedFields()
{
    mSerializedFields.clear();
    for (auto const& field : contract::kFields)
    {
        // String fields: length is the byte count of the text (no terminator), as the ONNX
        // parser passes string attributes; the literal is NUL-terminated anyway.
        mSerializedFields.emplace_back(field.name, field.value, field.type,
            static_cast<int32_t>(std::strlen(field.value)));
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
        logPluginMessage(Severity::kERROR, std::string("CrissCrossAttention clone failed: ") + e.what());
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
    if (!in || !out || nbInputs != kNbInputs || nbOutputs != kNbOutputs)
    {
        logPluginMessage(Severity::kERROR, "CrissCrossAttention: expected 3 inputs (query, key, value) and 1 output");
        return -1;
    }
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        if (in[i].desc.dims.nbDims != 4)
        {
            logPluginMessage(Severity::kERROR, "CrissCrossAttention: inputs must be 4-D (N x C x H x W)");
            return -1;
        }
    }
    return 0;
}

int32_t CrissCrossAttentionPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (!outputTypes || !inputTypes || nbOutputs != kNbOutputs || nbInputs != kNbInputs)
        return -1;
    outputTypes[0] = inputTypes[kValueIndex];
    return 0;
}

int32_t CrissCrossAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    if (!inputs || !outputs || nbInputs != kNbInputs || nbOutputs != kNbOutputs)
        return -1;
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        if (inputs[i].nbDims != 4)
        {
            logPluginMessage(Severity::kERROR, "CrissCrossAttention: inputs must be 4-D (N x C x H x W)");
            return -1;
        }
    }
    // The output is a re-weighting of value: same N, C, H, W expressions, no new arithmetic.
    outputs[0] = inputs[kValueIndex];
    return 0;
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
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (!inputs || nbInputs != kNbInputs)
        return 0;
    auto const& maxDims = inputs[kValueIndex].max;
    if (maxDims.nbDims != 4 || !fitsInt(maxDims.d[0]) || !fitsInt(maxDims.d[2]) || !fitsInt(maxDims.d[3]))
        return 0;
    return ccnet_cca_workspace_size(
        static_cast<int>(maxDims.d[0]), static_cast<int>(maxDims.d[2]), static_cast<int>(maxDims.d[3]));
}

int32_t CrissCrossAttentionPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    std::string why;
    if (!checkRuntimeDescs(in, nbInputs, out, nbOutputs, why))
    {
        logPluginMessage(Severity::kERROR, "CrissCrossAttention: " + why);
        return -1;
    }
    return 0;
}

int32_t CrissCrossAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    std::string why;
    if (!inputs || !outputs || !checkRuntimeDescs(inputDesc, kNbInputs, outputDesc, kNbOutputs, why))
    {
        logPluginMessage(Severity::kERROR, "CrissCrossAttention enqueue: " + (why.empty() ? "null tensors" : why));
        return -1;
    }
    auto const& q = inputDesc[kQueryIndex].dims;
    auto const& v = inputDesc[kValueIndex].dims;
    int const n = static_cast<int>(v.d[0]);
    int const h = static_cast<int>(v.d[2]);
    int const w = static_cast<int>(v.d[3]);
    int const dtype = inputDesc[0].type == DataType::kHALF ? CCNET_CCA_FP16 : CCNET_CCA_FP32;
    // TensorRT provides at least getWorkspaceSize() bytes for the max profile shape, which is
    // at least what the current shape needs.
    int const status = ccnet_cca_forward(inputs[kQueryIndex], inputs[kKeyIndex], inputs[kValueIndex], outputs[0], n,
        static_cast<int>(q.d[1]), static_cast<int>(v.d[1]), h, w, dtype, workspace,
        ccnet_cca_workspace_size(n, h, w), stream);
    if (status != CCNET_CCA_OK)
    {
        logPluginMessage(
            Severity::kERROR, "CrissCrossAttention enqueue: kernel launch failed (status " + std::to_string(status) + ")");
        return -1;
    }
    return 0;
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

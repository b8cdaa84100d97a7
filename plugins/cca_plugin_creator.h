// Creator of the CrissCrossAttention plugin. Its fields are the attributes of the ONNX node,
// as declared in plugins/cca_op.json (compiled in through the generated cca_op_contract.h).
#pragma once

#include "cca_op_contract.h"

#include <NvInferRuntime.h>

#include <vector>

namespace ccnet
{
class CrissCrossAttentionPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    CrissCrossAttentionPluginCreator();
    ~CrissCrossAttentionPluginCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};
} // namespace ccnet

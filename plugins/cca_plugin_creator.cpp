#include "cca_plugin_creator.h"

#include "cca_plugin.h"
#include "plugin_logging.h"

#include <cstring>
#include <exception>

namespace ccnet
{
namespace
{
char const* fieldTypeName(nvinfer1::PluginFieldType type)
{
    switch (type)
    {
    case nvinfer1::PluginFieldType::kCHAR: return "kCHAR (string)";
    case nvinfer1::PluginFieldType::kINT32: return "kINT32";
    case nvinfer1::PluginFieldType::kFLOAT32: return "kFLOAT32";
    default: return "another type";
    }
}

nvinfer1::PluginField const* findField(nvinfer1::PluginFieldCollection const& fc, char const* name)
{
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        if (fc.fields[i].name && std::strcmp(fc.fields[i].name, name) == 0)
            return &fc.fields[i];
    }
    return nullptr;
}

// A kCHAR field carries `length` bytes; accept the text with or without a trailing NUL.
bool stringFieldEquals(nvinfer1::PluginField const& field, char const* expected)
{
    if (!field.data || field.length < 0)
        return false;
    auto const* bytes = static_cast<char const*>(field.data);
    size_t length = static_cast<size_t>(field.length);
    if (length > 0 && bytes[length - 1] == '\0')
        --length;
    return length == std::strlen(expected) && std::memcmp(bytes, expected, length) == 0;
}
} // namespace

CrissCrossAttentionPluginCreator::CrissCrossAttentionPluginCreator()
{
    for (auto const& field : contract::kFields)
        mFieldNames.emplace_back(field.name, nullptr, field.type, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

std::string CrissCrossAttentionPluginCreator::validateFields(nvinfer1::PluginFieldCollection const* fc)
{
    if (!fc || fc->nbFields < 0 || (fc->nbFields > 0 && !fc->fields))
        return "no plugin fields given; expected the attributes of plugins/cca_op.json";
    for (auto const& spec : contract::kFields)
    {
        nvinfer1::PluginField const* field = findField(*fc, spec.name);
        std::string const name = std::string("field '") + spec.name + "'";
        if (!field)
            return name + " is missing (the ONNX node must carry attribute " + spec.name + "=\"" + spec.value + "\")";
        if (field->type != spec.type)
            return name + " has type " + fieldTypeName(field->type) + ", expected " + fieldTypeName(spec.type);
        if (!stringFieldEquals(*field, spec.value))
            return name + " must be \"" + spec.value + "\"";
    }
    return {};
}

nvinfer1::IPluginV3* CrissCrossAttentionPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try
    {
        std::string const problem = validateFields(fc);
        if (!problem.empty())
        {
            logPluginMessage(nvinfer1::ILogger::Severity::kERROR,
                std::string("cannot create ") + contract::kPluginNamespace + "::" + contract::kPluginName + " (layer '"
                    + (name ? name : "") + "'): " + problem);
            return nullptr;
        }
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            char const* fieldName = fc->fields[i].name ? fc->fields[i].name : "(null)";
            bool known = false;
            for (auto const& spec : contract::kFields)
                known = known || std::strcmp(spec.name, fieldName) == 0;
            if (!known)
                logPluginMessage(nvinfer1::ILogger::Severity::kWARNING,
                    std::string("CrissCrossAttention ignores unknown field '") + fieldName + "'");
        }
        return new CrissCrossAttentionPlugin();
    }
    catch (std::exception const& e)
    {
        logPluginMessage(nvinfer1::ILogger::Severity::kERROR, std::string("CrissCrossAttention creation failed: ") + e.what());
        return nullptr;
    }
}

nvinfer1::PluginFieldCollection const* CrissCrossAttentionPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* CrissCrossAttentionPluginCreator::getPluginName() const noexcept
{
    return contract::kPluginName;
}

char const* CrissCrossAttentionPluginCreator::getPluginVersion() const noexcept
{
    return contract::kPluginVersion;
}

char const* CrissCrossAttentionPluginCreator::getPluginNamespace() const noexcept
{
    return contract::kPluginNamespace;
}
} // namespace ccnet

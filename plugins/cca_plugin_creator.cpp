#include "cca_plugin_creator.h"

#include "cca_plugin.h"
#include "plugin_logging.h"
#include "plugin_validation.h"

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

// The field named `name`; fails when it is given twice (which of the two would count is unclear).
nvinfer1::PluginField const* findField(nvinfer1::PluginFieldCollection const& fc, char const* name)
{
    nvinfer1::PluginField const* found = nullptr;
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        if (fc.fields[i].name && std::strcmp(fc.fields[i].name, name) == 0)
        {
            CCNET_VALIDATE(!found, std::string("field '") + name + "' is given twice");
            found = &fc.fields[i];
        }
    }
    return found;
}

// A kCHAR field carries `length` bytes: the text alone, or the text and a terminating NUL (the
// ONNX parser's form). The length is checked first, so no byte past `length` is ever read.
bool stringFieldEquals(nvinfer1::PluginField const& field, char const* expected)
{
    if (!field.data || field.length < 0)
        return false;
    auto const* bytes = static_cast<char const*>(field.data);
    size_t const length = static_cast<size_t>(field.length);
    size_t const textLength = std::strlen(expected);
    if (length == textLength + 1 && bytes[textLength] != '\0')
        return false;
    return (length == textLength || length == textLength + 1) && std::memcmp(bytes, expected, textLength) == 0;
}

// Throws a ValidationError naming the first field that breaks the contract (cca_op.json).
void validateFields(nvinfer1::PluginFieldCollection const* fc)
{
    CCNET_VALIDATE(fc && fc->nbFields >= 0 && (fc->nbFields == 0 || fc->fields),
        "no plugin fields given; expected the attributes of plugins/cca_op.json");
    for (auto const& spec : contract::kFields)
    {
        nvinfer1::PluginField const* field = findField(*fc, spec.name);
        std::string const name = std::string("field '") + spec.name + "'";
        CCNET_VALIDATE(field,
            name + " is missing (the ONNX node must carry attribute " + spec.name + "=\"" + spec.value + "\")");
        CCNET_VALIDATE(field->type == spec.type,
            name + " has type " + fieldTypeName(field->type) + ", expected " + fieldTypeName(spec.type));
        CCNET_VALIDATE(stringFieldEquals(*field, spec.value), name + " must be \"" + spec.value + "\"");
    }
}

void warnAboutUnknownFields(nvinfer1::PluginFieldCollection const& fc)
{
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        char const* fieldName = fc.fields[i].name ? fc.fields[i].name : "(null)";
        bool known = false;
        for (auto const& spec : contract::kFields)
            known = known || std::strcmp(spec.name, fieldName) == 0;
        if (!known)
            logPluginMessage(nvinfer1::ILogger::Severity::kWARNING,
                std::string("CrissCrossAttention ignores unknown field '") + fieldName + "'");
    }
}
} // namespace

CrissCrossAttentionPluginCreator::CrissCrossAttentionPluginCreator()
{
    for (auto const& field : contract::kFields)
        mFieldNames.emplace_back(field.name, nullptr, field.type, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

nvinfer1::IPluginV3* CrissCrossAttentionPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try
    {
        validateFields(fc); // the only ValidationError source here
        warnAboutUnknownFields(*fc);
        return new CrissCrossAttentionPlugin();
    }
    catch (ValidationError const& e)
    {
        logPluginMessage(nvinfer1::ILogger::Severity::kERROR,
            std::string("cannot create ") + contract::kPluginNamespace + "::" + contract::kPluginName + " (layer '"
                + (name ? name : "") + "'): " + e.what());
        return nullptr;
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

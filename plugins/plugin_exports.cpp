// The C entry points TensorRT looks up in a dynamically loaded V3 plugin library
// (trtexec --dynamicPlugins, IPluginRegistry::loadLibrary).
#include "cca_kernels.h" // CCNET_EXPORT
#include "cca_plugin_creator.h"
#include "plugin_logging.h"

#include <NvInferRuntime.h>

extern "C" CCNET_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    ccnet::setPluginLoggerFinder(finder);
}

extern "C" CCNET_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    // Function-local statics: constructed on first use, after the library is fully loaded.
    static ccnet::CrissCrossAttentionPluginCreator crissCrossAttentionCreator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&crissCrossAttentionCreator};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

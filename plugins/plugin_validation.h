// How the plugin checks what it is handed (the PLUGIN_VALIDATE pattern of TensorRT OSS):
// CCNET_VALIDATE(condition, reason) throws a ValidationError carrying `reason` (evaluated
// only on failure); each entry point called by TensorRT catches it, logs the reason once and
// returns its error value, so no check is written twice and none can crash the caller.
#pragma once

#include <stdexcept>
#include <string>

namespace ccnet
{
class ValidationError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};
} // namespace ccnet

#define CCNET_VALIDATE(condition, reason)                                                                              \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(condition))                                                                                              \
            throw ::ccnet::ValidationError(reason);                                                                    \
    } while (0)

// Where the plugin library reports problems: the ILogger that TensorRT hands over through
// setLoggerFinder(), or stderr when none was set (ctypes users, tests, a logger finder that
// returns no logger).
#pragma once

#include <NvInferRuntime.h>

#include <string>

namespace ccnet
{
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
void logPluginMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;
} // namespace ccnet

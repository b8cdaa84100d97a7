// Test driver for the plugin libraries. Loads libccnet_plugins.so or libccnet_cca_cpu.so with
// dlopen and reaches the plugin only through the exported getCreators()/setLoggerFinder(), as
// TensorRT does; no TensorRT runtime is needed (only its headers). Built twice from this file:
// against the CUDA runtime (ccnet_plugin_host_driver) and against the CUDA CPU mode
// (ccnet_plugin_host_driver_cpu, whose "device" memory is host memory).
//   host_driver <lib.so> <check>      exit 0 = pass, 1 = fail, 77 = skipped (no CUDA device)
// Checks: describe create output-types formats shapes workspace workspace-guard
//         serialize-roundtrip clone invalid-fields invalid-fields-stderr
//         enqueue <fp32|fp16> <n> <cq> <c> <h> <w> <dir>   reads dir/{query,key,value}.bin into
//             device memory, runs the plugin's enqueue (output NaN-poisoned first), then
//             serializes the plugin, recreates it from the serialized fields and enqueues again:
//             both outputs must be identical; writes dir/output.bin.
#include "plugin_library.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

using namespace nvinfer1;
namespace contract = ccnet::contract;

namespace
{
int gFailures = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                       \
            ++gFailures;                                                                                               \
        }                                                                                                              \
    } while (0)

// ---- a small expression builder: constants fold, everything else stays symbolic ---------
class TestDimImpl : public apiv::VDimensionExpr
{
public:
    TestDimImpl(bool constant, int64_t value) : mConstant(constant), mValue(value) {}
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : -1; }
    bool isSizeTensor() const override { return false; }

private:
    bool mConstant;
    int64_t mValue;
};

class TestDimExpr : public IDimensionExpr
{
public:
    explicit TestDimExpr(apiv::VDimensionExpr* impl) { mImpl = impl; }
    ~TestDimExpr() noexcept override = default;
};

class TestExprBuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override { return make(true, value); }
    IDimensionExpr const* symbol() { return make(false, -1); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        if (!a.isConstant() || !b.isConstant())
            return make(false, -1);
        int64_t const x = a.getConstantValue();
        int64_t const y = b.getConstantValue();
        switch (op)
        {
        case DimensionOperation::kSUM: return constant(x + y);
        case DimensionOperation::kPROD: return constant(x * y);
        case DimensionOperation::kMAX: return constant(x > y ? x : y);
        case DimensionOperation::kMIN: return constant(x < y ? x : y);
        case DimensionOperation::kSUB: return constant(x - y);
        default: return make(false, -1);
        }
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    IDimensionExpr const* make(bool isConst, int64_t value)
    {
        mImpls.emplace_back(isConst, value);
        mExprs.emplace_back(&mImpls.back());
        return &mExprs.back();
    }
    std::deque<TestDimImpl> mImpls;
    std::deque<TestDimExpr> mExprs;
};

class TestExprBuilder : public IExprBuilder
{
public:
    TestExprBuilder() { mImpl = &impl; }
    ~TestExprBuilder() noexcept override = default;
    TestExprBuilderImpl impl;
};

using ccnet::test::buildOf;
using ccnet::test::collectionOf;
using ccnet::test::contractFields;
using ccnet::test::coreOf;
using ccnet::test::createValid;
using ccnet::test::DeviceBuffer;
using ccnet::test::findCreator;
using ccnet::test::Library;
using ccnet::test::PluginPtr;
using ccnet::test::runtimeOf;
using ccnet::test::TestLoggerFinder;

std::string fieldValue(PluginField const& f)
{
    return f.data ? std::string(static_cast<char const*>(f.data), static_cast<size_t>(f.length)) : std::string();
}

// ---- checks ---------------------------------------------------------------------------------
void checkDescribe(Library const& lib)
{
    int32_t nbCreators = -1;
    IPluginCreatorInterface* const* creators = lib.getCreators(nbCreators);
    CHECK(creators != nullptr);
    CHECK(nbCreators == 1);
    IPluginCreatorV3One* creator = findCreator(lib);
    CHECK(creator != nullptr);
    if (!creator)
        return;
    // JSON on stdout: the pytest side compares it with plugins/cca_op.json.
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr);
    std::printf("{\"nb_creators\": %d, \"interface_kind\": \"%s\", \"name\": \"%s\", \"version\": \"%s\", "
                "\"namespace\": \"%s\", \"fields\": [",
        nbCreators, creator->getInterfaceInfo().kind, creator->getPluginName(), creator->getPluginVersion(),
        creator->getPluginNamespace());
    for (int32_t i = 0; names && i < names->nbFields; ++i)
        std::printf("%s{\"name\": \"%s\", \"type\": %d}", i ? ", " : "", names->fields[i].name,
            static_cast<int>(names->fields[i].type));
    std::printf("]}\n");
}

void checkCreate(Library const& lib)
{
    IPluginCreatorV3One* creator = findCreator(lib);
    CHECK(creator != nullptr);
    for (TensorRTPhase phase : {TensorRTPhase::kBUILD, TensorRTPhase::kRUNTIME})
    {
        PluginPtr plugin = createValid(creator, phase);
        CHECK(plugin != nullptr);
        if (!plugin)
            return;
        CHECK(std::strcmp(plugin->getInterfaceInfo().kind, "PLUGIN") == 0);
        IPluginV3OneCore* core = coreOf(plugin.get());
        CHECK(core && buildOf(plugin.get()) && runtimeOf(plugin.get()));
        if (!core)
            return;
        CHECK(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
        CHECK(std::strcmp(buildOf(plugin.get())->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
        CHECK(std::strcmp(runtimeOf(plugin.get())->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0);
        CHECK(std::strcmp(core->getPluginName(), creator->getPluginName()) == 0);
        CHECK(std::strcmp(core->getPluginVersion(), creator->getPluginVersion()) == 0);
        CHECK(std::strcmp(core->getPluginNamespace(), creator->getPluginNamespace()) == 0);
        CHECK(buildOf(plugin.get())->getNbOutputs() == 1);
    }
    // Strings given without the terminating NUL (length = text bytes) are accepted as well.
    std::vector<PluginField> withoutNul;
    for (auto const& spec : contract::kFields)
        withoutNul.emplace_back(spec.name, spec.value, spec.type, static_cast<int32_t>(std::strlen(spec.value)));
    auto fc = collectionOf(withoutNul);
    PluginPtr plugin(creator->createPlugin("cca_without_nul", &fc, TensorRTPhase::kRUNTIME));
    CHECK(plugin != nullptr);
}

void checkOutputTypes(Library const& lib)
{
    PluginPtr plugin = createValid(findCreator(lib), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    IPluginV3OneBuild* build = buildOf(plugin.get());
    for (DataType type : {DataType::kFLOAT, DataType::kHALF})
    {
        DataType in[3] = {type, type, type};
        DataType out[1] = {DataType::kINT32};
        CHECK(build->getOutputDataTypes(out, 1, in, 3) == 0);
        CHECK(out[0] == type);
    }
    DataType in[3] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
    DataType out[2];
    CHECK(build->getOutputDataTypes(out, 2, in, 3) != 0);
    CHECK(build->getOutputDataTypes(out, 1, in, 2) != 0);
}

DynamicPluginTensorDesc tensorDesc(DataType type, TensorFormat format, int64_t c)
{
    DynamicPluginTensorDesc d{};
    d.desc.dims.nbDims = 4;
    int64_t dims[4] = {-1, c, -1, -1};
    for (int i = 0; i < 4; ++i)
        d.desc.dims.d[i] = dims[i];
    d.desc.type = type;
    d.desc.format = format;
    d.min = d.opt = d.max = d.desc.dims;
    return d;
}

// True when TensorRT, asking position by position, would accept all four tensors as given.
bool acceptsCombination(IPluginV3OneBuild* build, std::vector<std::pair<DataType, TensorFormat>> const& types)
{
    std::vector<DynamicPluginTensorDesc> descs;
    int64_t channels[4] = {64, 64, 512, 512};
    for (size_t i = 0; i < types.size(); ++i)
        descs.push_back(tensorDesc(types[i].first, types[i].second, channels[i]));
    for (int32_t pos = 0; pos < 4; ++pos)
        if (!build->supportsFormatCombination(pos, descs.data(), 3, 1))
            return false;
    return true;
}

void checkFormats(Library const& lib)
{
    PluginPtr plugin = createValid(findCreator(lib), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    IPluginV3OneBuild* b = buildOf(plugin.get());
    auto const L = TensorFormat::kLINEAR;
    auto const F = DataType::kFLOAT;
    auto const H = DataType::kHALF;
    CHECK(acceptsCombination(b, {{F, L}, {F, L}, {F, L}, {F, L}}));
    CHECK(acceptsCombination(b, {{H, L}, {H, L}, {H, L}, {H, L}}));
    // mixed precisions
    CHECK(!acceptsCombination(b, {{F, L}, {H, L}, {F, L}, {F, L}}));
    CHECK(!acceptsCombination(b, {{H, L}, {H, L}, {F, L}, {F, L}}));
    CHECK(!acceptsCombination(b, {{F, L}, {F, L}, {F, L}, {H, L}}));
    CHECK(!acceptsCombination(b, {{H, L}, {H, L}, {H, L}, {F, L}}));
    // other types
    CHECK(!acceptsCombination(b, {{DataType::kINT8, L}, {DataType::kINT8, L}, {DataType::kINT8, L}, {DataType::kINT8, L}}));
    CHECK(!acceptsCombination(b, {{DataType::kBF16, L}, {DataType::kBF16, L}, {DataType::kBF16, L}, {DataType::kBF16, L}}));
    CHECK(!acceptsCombination(b, {{DataType::kINT32, L}, {DataType::kINT32, L}, {DataType::kINT32, L}, {DataType::kINT32, L}}));
    // other formats
    CHECK(!acceptsCombination(b, {{H, TensorFormat::kCHW2}, {H, L}, {H, L}, {H, L}}));
    CHECK(!acceptsCombination(b, {{H, L}, {H, L}, {H, TensorFormat::kHWC8}, {H, L}}));
    CHECK(!acceptsCombination(b, {{F, L}, {F, L}, {F, L}, {F, TensorFormat::kCHW32}}));
    // out-of-range positions and wrong arity are refused, not read out of bounds
    auto d = tensorDesc(F, L, 64);
    DynamicPluginTensorDesc four[4] = {d, d, d, d};
    CHECK(!b->supportsFormatCombination(4, four, 3, 1));
    CHECK(!b->supportsFormatCombination(-1, four, 3, 1));
    CHECK(!b->supportsFormatCombination(0, four, 2, 1));
}

void checkShapes(Library const& lib)
{
    PluginPtr plugin = createValid(findCreator(lib), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    IPluginV3OneBuild* b = buildOf(plugin.get());
    TestExprBuilder builder;
    IDimensionExpr const* batch = builder.impl.symbol();
    IDimensionExpr const* height = builder.impl.symbol();
    IDimensionExpr const* width = builder.impl.symbol();
    DimsExprs inputs[3];
    int64_t const channels[3] = {64, 64, 512};
    for (int i = 0; i < 3; ++i)
    {
        inputs[i].nbDims = 4;
        inputs[i].d[0] = batch;
        inputs[i].d[1] = builder.constant(channels[i]);
        inputs[i].d[2] = height;
        inputs[i].d[3] = width;
    }
    DimsExprs outputs[1]{};
    CHECK(b->getOutputShapes(inputs, 3, nullptr, 0, outputs, 1, builder) == 0);
    CHECK(outputs[0].nbDims == 4);
    CHECK(outputs[0].d[0] == batch && outputs[0].d[2] == height && outputs[0].d[3] == width);
    CHECK(outputs[0].d[1] && outputs[0].d[1]->isConstant() && outputs[0].d[1]->getConstantValue() == 512);

    // static shapes: the output takes value's constants, not query's
    DimsExprs fixed[3];
    int64_t const shape[3][4] = {{2, 8, 5, 7}, {2, 8, 5, 7}, {2, 33, 5, 7}};
    for (int i = 0; i < 3; ++i)
    {
        fixed[i].nbDims = 4;
        for (int j = 0; j < 4; ++j)
            fixed[i].d[j] = builder.constant(shape[i][j]);
    }
    CHECK(b->getOutputShapes(fixed, 3, nullptr, 0, outputs, 1, builder) == 0);
    for (int j = 0; j < 4; ++j)
        CHECK(outputs[0].d[j]->isConstant() && outputs[0].d[j]->getConstantValue() == shape[2][j]);

    // wrong rank or arity fails cleanly
    DimsExprs rank3[3] = {fixed[0], fixed[1], fixed[2]};
    rank3[2].nbDims = 3;
    CHECK(b->getOutputShapes(rank3, 3, nullptr, 0, outputs, 1, builder) != 0);
    CHECK(b->getOutputShapes(fixed, 2, nullptr, 0, outputs, 1, builder) != 0);
}

void setMaxDims(DynamicPluginTensorDesc& d, int64_t n, int64_t h, int64_t w)
{
    int64_t const maxDims[4] = {n, d.desc.dims.d[1], h, w};
    for (int i = 0; i < 4; ++i)
        d.max.d[i] = maxDims[i];
}

void checkWorkspace(Library const& lib, TestLoggerFinder& finder)
{
    PluginPtr plugin = createValid(findCreator(lib), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    IPluginV3OneBuild* b = buildOf(plugin.get());
    DynamicPluginTensorDesc in[3] = {tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, 64),
        tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, 64), tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, 512)};
    for (auto& d : in)
        setMaxDims(d, 2, 128, 256);
    DynamicPluginTensorDesc out[1] = {in[2]};
    // Per pixel of the largest profile shape: two float2 softmax statistics and one probability
    // per key of its row and its column.
    CHECK(b->getWorkspaceSize(in, 3, out, 1) == size_t{2} * 128 * 256 * (16 + 4 * (128 + 256)));
    CHECK(b->configurePlugin(in, 3, out, 1) == 0);
    CHECK(b->configurePlugin(in, 2, out, 1) != 0);

    // Profile bounds the kernels cannot run: refused with a logged reason, never a wrapped size.
    int64_t const intMax = std::numeric_limits<int32_t>::max();
    int64_t const tooLarge[][3] = {{intMax, intMax, intMax}, {1, 65536, 8}, {70000, 4, 4}};
    for (auto const& nhw : tooLarge)
    {
        DynamicPluginTensorDesc big[3] = {in[0], in[1], in[2]};
        for (auto& d : big)
            setMaxDims(d, nhw[0], nhw[1], nhw[2]);
        DynamicPluginTensorDesc bigOut[1] = {big[2]};
        size_t const before = finder.logger.messages.size();
        CHECK(b->getWorkspaceSize(big, 3, bigOut, 1) == 0);
        CHECK(b->configurePlugin(big, 3, bigOut, 1) != 0);
        CHECK(finder.logger.contains("problem too large", before));
    }
    CHECK(lib.workspaceSize(intMax, intMax, intMax) == 0);
    CHECK(lib.workspaceSize(0, 4, 4) == 0);

    // onShapeChange validates concrete shapes and types
    IPluginV3OneRuntime* r = runtimeOf(plugin.get());
    PluginTensorDesc rin[3] = {in[0].desc, in[1].desc, in[2].desc};
    int64_t const concrete[3][4] = {{2, 64, 97, 97}, {2, 64, 97, 97}, {2, 512, 97, 97}};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j)
            rin[i].dims.d[j] = concrete[i][j];
    PluginTensorDesc rout[1] = {rin[2]};
    CHECK(r->onShapeChange(rin, 3, rout, 1) == 0);
    PluginTensorDesc badKey[3] = {rin[0], rin[1], rin[2]};
    badKey[1].dims.d[1] = 32;
    size_t before = finder.logger.messages.size();
    CHECK(r->onShapeChange(badKey, 3, rout, 1) != 0);
    CHECK(finder.logger.contains("query and key must have the same shape", before));
    PluginTensorDesc badType[3] = {rin[0], rin[1], rin[2]};
    badType[2].type = DataType::kFLOAT;
    before = finder.logger.messages.size();
    CHECK(r->onShapeChange(badType, 3, rout, 1) != 0);
    CHECK(finder.logger.contains("all tensors must be FP32, or all FP16", before));
}

// enqueue passes the workspace the plugin declared for its configured ranges: a shape needing
// more is refused by the kernels, named in the log, and nothing runs. Host buffers are sized for
// the running shape and the workspace for the configured one, so a guard that failed to fire
// would overrun the workspace (AddressSanitizer build) or fail the launch (CUDA build).
void checkWorkspaceGuard(Library const& lib, TestLoggerFinder& finder)
{
    PluginPtr plugin = createValid(findCreator(lib), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    IPluginV3OneBuild* b = buildOf(plugin.get());
    IPluginV3OneRuntime* r = runtimeOf(plugin.get());
    int64_t const cq = 8, c = 16;
    DynamicPluginTensorDesc in[3] = {tensorDesc(DataType::kFLOAT, TensorFormat::kLINEAR, cq),
        tensorDesc(DataType::kFLOAT, TensorFormat::kLINEAR, cq), tensorDesc(DataType::kFLOAT, TensorFormat::kLINEAR, c)};
    for (auto& d : in)
        setMaxDims(d, 1, 4, 4);
    DynamicPluginTensorDesc out[1] = {in[2]};
    CHECK(b->configurePlugin(in, 3, out, 1) == 0);
    size_t const configured = b->getWorkspaceSize(in, 3, out, 1);
    CHECK(configured == lib.workspaceSize(1, 4, 4));

    int64_t const h = 8, w = 8; // beyond the configured 4 x 4
    PluginTensorDesc rin[4] = {in[0].desc, in[1].desc, in[2].desc, in[2].desc};
    int64_t const channels[4] = {cq, cq, c, c};
    for (int i = 0; i < 4; ++i)
    {
        int64_t const dims[4] = {1, channels[i], h, w};
        for (int j = 0; j < 4; ++j)
            rin[i].dims.d[j] = dims[j];
    }
    std::vector<float> q(cq * h * w, 0.5f), k(cq * h * w, 0.25f), v(c * h * w, 1.f), o(c * h * w, -7.f);
    std::vector<char> workspace(configured);
    void const* inputs[3] = {q.data(), k.data(), v.data()};
    void* outputs[1] = {o.data()};
    size_t const before = finder.logger.messages.size();
    CHECK(r->enqueue(rin, rin + 3, inputs, outputs, workspace.data(), nullptr) != 0);
    CHECK(finder.logger.contains("ccnet_cca_forward failed: workspace too small", before));
    bool untouched = true;
    for (float x : o)
        untouched = untouched && x == -7.f;
    CHECK(untouched);

    // A clone keeps the configured workspace (TensorRT clones configured plugins).
    PluginPtr copy(plugin->clone());
    CHECK(copy != nullptr);
    if (copy)
    {
        size_t const beforeCopy = finder.logger.messages.size();
        CHECK(runtimeOf(copy.get())->enqueue(rin, rin + 3, inputs, outputs, workspace.data(), nullptr) != 0);
        CHECK(finder.logger.contains("workspace too small", beforeCopy));
    }
}

std::map<std::string, std::string> fieldMap(PluginFieldCollection const* fc)
{
    std::map<std::string, std::string> values;
    for (int32_t i = 0; fc && i < fc->nbFields; ++i)
        values[fc->fields[i].name] = std::to_string(static_cast<int>(fc->fields[i].type)) + ":" + fieldValue(fc->fields[i]);
    return values;
}

void checkSerializeRoundtrip(Library const& lib)
{
    IPluginCreatorV3One* creator = findCreator(lib);
    PluginPtr plugin = createValid(creator, TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    PluginFieldCollection const* saved = runtimeOf(plugin.get())->getFieldsToSerialize();
    CHECK(saved != nullptr);
    auto const savedFields = fieldMap(saved);
    CHECK(static_cast<int>(savedFields.size()) == contract::kNbFields);
    for (auto const& spec : contract::kFields)
    {
        auto it = savedFields.find(spec.name);
        CHECK(it != savedFields.end());
        // Serialized like the ONNX parser passes strings: the length counts the terminating NUL.
        if (it != savedFields.end())
            CHECK(it->second == std::to_string(static_cast<int>(spec.type)) + ":" + spec.value + std::string(1, '\0'));
    }
    // What TensorRT does at deserialization: create from the serialized fields, runtime phase.
    PluginPtr restored(creator->createPlugin("cca_restored", saved, TensorRTPhase::kRUNTIME));
    CHECK(restored != nullptr);
    if (!restored)
        return;
    CHECK(fieldMap(runtimeOf(restored.get())->getFieldsToSerialize()) == savedFields);
    CHECK(std::strcmp(coreOf(restored.get())->getPluginName(), contract::kPluginName) == 0);
}

void checkClone(Library const& lib)
{
    IPluginCreatorV3One* creator = findCreator(lib);
    PluginPtr plugin = createValid(creator, TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    auto const original = fieldMap(runtimeOf(plugin.get())->getFieldsToSerialize());
    PluginPtr copy(plugin->clone());
    CHECK(copy != nullptr);
    if (!copy)
        return;
    CHECK(copy.get() != plugin.get());
    PluginFieldCollection const* copiedFc = runtimeOf(copy.get())->getFieldsToSerialize();
    // The clone owns its field storage: it must survive the original's destruction.
    CHECK(copiedFc != runtimeOf(plugin.get())->getFieldsToSerialize());
    plugin.reset();
    CHECK(fieldMap(copiedFc) == original);
    CHECK(std::strcmp(coreOf(copy.get())->getPluginNamespace(), contract::kPluginNamespace) == 0);
    PluginPtr attached(runtimeOf(copy.get())->attachToContext(nullptr));
    CHECK(attached != nullptr && attached.get() != copy.get());
}

// A heap copy of `text` (NUL included) that lives until exit: reading past it is a heap
// overflow AddressSanitizer reports.
char const* heapText(char const* text)
{
    static std::deque<std::unique_ptr<char[]>> copies;
    size_t const bytes = std::strlen(text) + 1;
    copies.emplace_back(new char[bytes]);
    std::memcpy(copies.back().get(), text, bytes);
    return copies.back().get();
}

// Each case must fail creation, without crashing, and log a reason naming the problem.
void checkInvalidFields(Library const& lib, TestLoggerFinder* finder)
{
    IPluginCreatorV3One* creator = findCreator(lib);
    CHECK(creator != nullptr);
    if (!creator)
        return;
    struct Case
    {
        std::string label;
        std::function<void(std::vector<PluginField>&)> mutate;
        std::string expectInLog;
    };
    static int32_t const intOne = 1;
    std::vector<Case> cases = {
        {"missing plugin_version", [](auto& f) { f.erase(f.begin()); }, "plugin_version"},
        {"missing plugin_namespace", [](auto& f) { f.pop_back(); }, "plugin_namespace"},
        {"no fields", [](auto& f) { f.clear(); }, "missing"},
        {"version as int32", [](auto& f) { f[0] = PluginField("plugin_version", &intOne, PluginFieldType::kINT32, 1); }, "type"},
        {"namespace as float", [](auto& f) { f[1].type = PluginFieldType::kFLOAT32; }, "type"},
        {"wrong version", [](auto& f) { f[0] = PluginField("plugin_version", "2", PluginFieldType::kCHAR, 1); }, "plugin_version"},
        {"wrong namespace", [](auto& f) { f[1] = PluginField("plugin_namespace", "mmcv", PluginFieldType::kCHAR, 4); }, "plugin_namespace"},
        {"null data", [](auto& f) { f[0].data = nullptr; }, "plugin_version"},
        {"negative length", [](auto& f) { f[1].length = -3; }, "plugin_namespace"},
        {"truncated value", [](auto& f) { f[1].length = 2; }, "plugin_namespace"},
        {"value without its NUL but one byte too long", [](auto& f) { f[1] = PluginField("plugin_namespace", "ccnetx", PluginFieldType::kCHAR, 6); }, "plugin_namespace"},
        {"NUL inside the value", [](auto& f) { f[1] = PluginField("plugin_namespace", "cc\0et", PluginFieldType::kCHAR, 6); }, "plugin_namespace"},
        // A length far beyond the 2-byte buffer: refused by the length alone, without reading.
        {"length beyond the buffer", [](auto& f) { f[0].data = heapText("1"); f[0].length = std::numeric_limits<int32_t>::max(); }, "plugin_version"},
        {"duplicate field", [](auto& f) { f.push_back(f[0]); }, "given twice"},
    };
    for (auto const& c : cases)
    {
        auto fields = contractFields();
        c.mutate(fields);
        auto fc = collectionOf(fields);
        size_t const before = finder ? finder->logger.messages.size() : 0;
        PluginPtr plugin(creator->createPlugin("cca_bad", &fc, TensorRTPhase::kBUILD));
        if (plugin)
            std::fprintf(stderr, "FAIL case '%s': plugin was created\n", c.label.c_str());
        CHECK(plugin == nullptr);
        if (finder)
        {
            bool const logged = finder->logger.contains(c.expectInLog, before);
            if (!logged)
                std::fprintf(stderr, "FAIL case '%s': no logged reason mentioning '%s'\n", c.label.c_str(),
                    c.expectInLog.c_str());
            CHECK(logged);
        }
    }
    size_t const before = finder ? finder->logger.messages.size() : 0;
    PluginPtr plugin(creator->createPlugin("cca_null", nullptr, TensorRTPhase::kBUILD));
    CHECK(plugin == nullptr);
    if (finder)
        CHECK(finder->logger.messages.size() > before);
}

// ---- enqueue on the plugin object, no TensorRT runtime --------------------------------------
std::vector<char> readFile(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One enqueue into a NaN-poisoned output (all-ones bytes are NaN in FP32 and FP16, so an element
// never written stays NaN) and a poisoned workspace; the output bytes, or empty on failure.
std::vector<char> enqueueOnce(IPluginV3OneRuntime* runtime, PluginTensorDesc const* descs, DeviceBuffer* tensors,
    DeviceBuffer& workspace, cudaStream_t stream)
{
    DeviceBuffer& output = tensors[3];
    if (cudaMemset(output.pointer, 0xFF, output.bytes) != cudaSuccess
        || cudaMemset(workspace.pointer, 0xFF, workspace.bytes) != cudaSuccess)
        return {};
    void const* inputs[3] = {tensors[0].pointer, tensors[1].pointer, tensors[2].pointer};
    void* outputs[1] = {output.pointer};
    int32_t const status = runtime->enqueue(descs, descs + 3, inputs, outputs, workspace.pointer, stream);
    cudaError_t const syncError = cudaStreamSynchronize(stream);
    if (status != 0 || syncError != cudaSuccess)
    {
        std::fprintf(stderr, "enqueue failed: status %d, %s\n", status, cudaGetErrorString(syncError));
        return {};
    }
    std::vector<char> result(output.bytes);
    if (cudaMemcpy(result.data(), output.pointer, output.bytes, cudaMemcpyDeviceToHost) != cudaSuccess)
        return {};
    return result;
}

int runEnqueue(Library const& lib, int argc, char** argv)
{
    if (argc != 10)
    {
        std::fprintf(stderr, "usage: enqueue <fp32|fp16> <n> <cq> <c> <h> <w> <dir>\n");
        return 1;
    }
    bool const half = std::strcmp(argv[3], "fp16") == 0;
    int64_t const n = std::atoll(argv[4]), cq = std::atoll(argv[5]), c = std::atoll(argv[6]), h = std::atoll(argv[7]),
                  w = std::atoll(argv[8]);
    std::string const dir = argv[9];
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::fprintf(stderr, "SKIP: no CUDA device\n");
        return 77;
    }
    IPluginCreatorV3One* creator = findCreator(lib);
    PluginPtr plugin = createValid(creator, TensorRTPhase::kBUILD);
    if (!plugin)
        return 1;
    DataType const type = half ? DataType::kHALF : DataType::kFLOAT;
    size_t const elem = half ? 2 : 4;
    int64_t const shapes[4][4] = {{n, cq, h, w}, {n, cq, h, w}, {n, c, h, w}, {n, c, h, w}};
    PluginTensorDesc descs[4]{};
    DynamicPluginTensorDesc dyn[4]{};
    for (int i = 0; i < 4; ++i)
    {
        descs[i].dims.nbDims = 4;
        for (int j = 0; j < 4; ++j)
            descs[i].dims.d[j] = shapes[i][j];
        descs[i].type = type;
        descs[i].format = TensorFormat::kLINEAR;
        dyn[i].desc = descs[i];
        dyn[i].min = dyn[i].opt = dyn[i].max = descs[i].dims;
    }
    // As TensorRT's builder: configure with the ranges, size the workspace, set the shapes.
    IPluginV3OneBuild* build = buildOf(plugin.get());
    if (build->configurePlugin(dyn, 3, dyn + 3, 1) != 0 || runtimeOf(plugin.get())->onShapeChange(descs, 3, descs + 3, 1) != 0)
        return 1;
    DeviceBuffer workspace;
    DeviceBuffer tensors[4];
    bool ok = workspace.allocate(build->getWorkspaceSize(dyn, 3, dyn + 3, 1));
    char const* names[3] = {"query", "key", "value"};
    for (int i = 0; i < 4 && ok; ++i)
        ok = tensors[i].allocate(static_cast<size_t>(shapes[i][0] * shapes[i][1] * shapes[i][2] * shapes[i][3]) * elem);
    for (int i = 0; i < 3 && ok; ++i)
    {
        std::vector<char> host = readFile(dir + "/" + names[i] + ".bin");
        if (host.size() != tensors[i].bytes)
        {
            std::fprintf(stderr, "%s.bin has %zu bytes, expected %zu\n", names[i], host.size(), tensors[i].bytes);
            return 1;
        }
        ok = cudaMemcpy(tensors[i].pointer, host.data(), host.size(), cudaMemcpyHostToDevice) == cudaSuccess;
    }
    cudaStream_t stream{};
    ok = ok && cudaStreamCreate(&stream) == cudaSuccess;
    if (!ok)
    {
        std::fprintf(stderr, "CUDA setup failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    std::vector<char> const first = enqueueOnce(runtimeOf(plugin.get()), descs, tensors, workspace, stream);

    // As deserializing an engine: a new plugin from the serialized fields, runtime phase, only
    // onShapeChange before enqueue. It must compute exactly the same output.
    PluginPtr restored(
        creator->createPlugin("cca_restored", runtimeOf(plugin.get())->getFieldsToSerialize(), TensorRTPhase::kRUNTIME));
    std::vector<char> second;
    if (restored && runtimeOf(restored.get())->onShapeChange(descs, 3, descs + 3, 1) == 0)
        second = enqueueOnce(runtimeOf(restored.get()), descs, tensors, workspace, stream);
    cudaStreamDestroy(stream);
    if (first.empty() || second.empty())
        return 1;
    if (first != second)
    {
        std::fprintf(stderr, "FAIL: the plugin recreated from its serialized fields computed a different output\n");
        return 1;
    }
    std::ofstream(dir + "/output.bin", std::ios::binary).write(first.data(), static_cast<std::streamsize>(first.size()));
    return 0;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc < 3)
    {
        std::fprintf(stderr, "usage: %s <plugin library> <check> [args]\n", argv[0]);
        return 2;
    }
    Library lib = ccnet::test::openLibrary(argv[1]);
    std::string const check = argv[2];
    static TestLoggerFinder finder; // outlives every plugin call (the library keeps the pointer)
    // invalid-fields-stderr runs without a logger finder: reasons must then go to stderr.
    if (check != "invalid-fields-stderr")
        lib.setLoggerFinder(&finder);

    if (check == "describe")
        checkDescribe(lib);
    else if (check == "create")
        checkCreate(lib);
    else if (check == "output-types")
        checkOutputTypes(lib);
    else if (check == "formats")
        checkFormats(lib);
    else if (check == "shapes")
        checkShapes(lib);
    else if (check == "workspace")
        checkWorkspace(lib, finder);
    else if (check == "workspace-guard")
        checkWorkspaceGuard(lib, finder);
    else if (check == "serialize-roundtrip")
        checkSerializeRoundtrip(lib);
    else if (check == "clone")
        checkClone(lib);
    else if (check == "invalid-fields")
        checkInvalidFields(lib, &finder);
    else if (check == "invalid-fields-stderr")
        checkInvalidFields(lib, nullptr);
    else if (check == "enqueue")
        return runEnqueue(lib, argc, argv);
    else
    {
        std::fprintf(stderr, "unknown check '%s'\n", check.c_str());
        return 2;
    }
    if (gFailures)
        std::fprintf(stderr, "%s: %d check(s) failed\n", check.c_str(), gFailures);
    else
        std::fprintf(stderr, "%s: ok\n", check.c_str());
    return gFailures ? 1 : 0;
}

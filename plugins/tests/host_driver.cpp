// Host-side test driver for libccnet_plugins.so. Loads the library with dlopen and reaches the
// plugin only through the exported getCreators()/setLoggerFinder(), as TensorRT does; no
// TensorRT runtime is needed (only its headers).
//   host_driver <lib.so> <check>      exit 0 = pass, 1 = fail, 77 = skipped (no GPU)
// Checks: describe create output-types formats shapes workspace serialize-roundtrip clone
//         invalid-fields invalid-fields-stderr
//         enqueue <fp32|fp16> <n> <cq> <c> <h> <w> <dir>   (GPU: reads dir/{query,key,value}.bin,
//         writes dir/output.bin; the output is NaN-poisoned before the run)
#include "cca_op_contract.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
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

// ---- logging: captures what the library reports through setLoggerFinder -----------------
class CapturingLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        messages.push_back(msg ? msg : "");
        if (severity <= Severity::kWARNING)
            std::fprintf(stderr, "[logged] %s\n", msg ? msg : "");
    }
    std::vector<std::string> messages;
};

class TestLoggerFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override { return &logger; }
    CapturingLogger logger;
};

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

// ---- library access -----------------------------------------------------------------------
using GetCreatorsFn = IPluginCreatorInterface* const* (*) (int32_t&);
using SetLoggerFinderFn = void (*)(ILoggerFinder*);

struct Library
{
    void* handle{};
    GetCreatorsFn getCreators{};
    SetLoggerFinderFn setLoggerFinder{};
};

Library openLibrary(char const* path)
{
    Library lib;
    lib.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib.handle)
    {
        std::fprintf(stderr, "dlopen(%s) failed: %s\n", path, dlerror());
        std::exit(1);
    }
    lib.getCreators = reinterpret_cast<GetCreatorsFn>(dlsym(lib.handle, "getCreators"));
    lib.setLoggerFinder = reinterpret_cast<SetLoggerFinderFn>(dlsym(lib.handle, "setLoggerFinder"));
    if (!lib.getCreators || !lib.setLoggerFinder)
    {
        std::fprintf(stderr, "library does not export getCreators/setLoggerFinder\n");
        std::exit(1);
    }
    return lib;
}

IPluginCreatorV3One* findCreator(Library const& lib)
{
    int32_t nbCreators = -1;
    IPluginCreatorInterface* const* creators = lib.getCreators(nbCreators);
    if (!creators || nbCreators < 1)
        return nullptr;
    for (int32_t i = 0; i < nbCreators; ++i)
    {
        InterfaceInfo const info = creators[i]->getInterfaceInfo();
        if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0)
            continue;
        auto* creator = static_cast<IPluginCreatorV3One*>(creators[i]);
        if (std::strcmp(creator->getPluginName(), contract::kPluginName) == 0)
            return creator;
    }
    return nullptr;
}

// Valid fields as the ONNX parser passes string attributes (length = bytes, no terminator).
std::vector<PluginField> contractFields()
{
    std::vector<PluginField> fields;
    for (auto const& spec : contract::kFields)
        fields.emplace_back(spec.name, spec.value, spec.type, static_cast<int32_t>(std::strlen(spec.value)));
    return fields;
}

PluginFieldCollection collectionOf(std::vector<PluginField> const& fields)
{
    PluginFieldCollection fc;
    fc.nbFields = static_cast<int32_t>(fields.size());
    fc.fields = fields.data();
    return fc;
}

struct PluginDeleter
{
    void operator()(IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<IPluginV3, PluginDeleter>;

PluginPtr createValid(IPluginCreatorV3One* creator, TensorRTPhase phase = TensorRTPhase::kBUILD)
{
    auto fields = contractFields();
    auto fc = collectionOf(fields);
    return PluginPtr(creator->createPlugin("cca_test", &fc, phase));
}

IPluginV3OneCore* coreOf(IPluginV3* p)
{
    return static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
}
IPluginV3OneBuild* buildOf(IPluginV3* p)
{
    return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
IPluginV3OneRuntime* runtimeOf(IPluginV3* p)
{
    return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}

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
    // Strings passed with a trailing NUL counted in length are accepted as well.
    std::vector<PluginField> withNul;
    for (auto const& spec : contract::kFields)
        withNul.emplace_back(spec.name, spec.value, spec.type, static_cast<int32_t>(std::strlen(spec.value) + 1));
    auto fc = collectionOf(withNul);
    PluginPtr plugin(creator->createPlugin("cca_nul", &fc, TensorRTPhase::kRUNTIME));
    CHECK(plugin != nullptr);
}

void checkOutputTypes(Library const& lib)
{
    PluginPtr plugin = createValid(findCreator(lib));
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
    PluginPtr plugin = createValid(findCreator(lib));
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
    PluginPtr plugin = createValid(findCreator(lib));
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

void checkWorkspace(Library const& lib)
{
    PluginPtr plugin = createValid(findCreator(lib));
    CHECK(plugin != nullptr);
    if (!plugin)
        return;
    IPluginV3OneBuild* b = buildOf(plugin.get());
    DynamicPluginTensorDesc in[3] = {tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, 64),
        tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, 64), tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, 512)};
    for (auto& d : in)
    {
        int64_t const maxDims[4] = {2, d.desc.dims.d[1], 128, 256};
        for (int i = 0; i < 4; ++i)
            d.max.d[i] = maxDims[i];
    }
    DynamicPluginTensorDesc out[1] = {in[2]};
    // Two float2 softmax statistics per pixel of the largest profile shape.
    CHECK(b->getWorkspaceSize(in, 3, out, 1) == size_t{16} * 2 * 128 * 256); // 16 B per pixel, N=2
    CHECK(b->configurePlugin(in, 3, out, 1) == 0);
    CHECK(b->configurePlugin(in, 2, out, 1) != 0);

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
    CHECK(r->onShapeChange(badKey, 3, rout, 1) != 0);
    PluginTensorDesc badType[3] = {rin[0], rin[1], rin[2]};
    badType[2].type = DataType::kFLOAT;
    CHECK(r->onShapeChange(badType, 3, rout, 1) != 0);
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
    PluginPtr plugin = createValid(creator);
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
        if (it != savedFields.end())
            CHECK(it->second == std::to_string(static_cast<int>(spec.type)) + ":" + spec.value);
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
    PluginPtr plugin = createValid(creator);
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
            bool logged = false;
            for (size_t i = before; i < finder->logger.messages.size(); ++i)
                logged = logged || finder->logger.messages[i].find(c.expectInLog) != std::string::npos;
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

// ---- GPU: enqueue on the plugin object, no TensorRT runtime -------------------------------
std::vector<char> readFile(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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
    PluginPtr plugin = createValid(findCreator(lib), TensorRTPhase::kRUNTIME);
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
    IPluginV3OneBuild* build = buildOf(plugin.get());
    IPluginV3OneRuntime* runtime = runtimeOf(plugin.get());
    if (build->configurePlugin(dyn, 3, dyn + 3, 1) != 0 || runtime->onShapeChange(descs, 3, descs + 3, 1) != 0)
        return 1;
    size_t const workspaceBytes = build->getWorkspaceSize(dyn, 3, dyn + 3, 1);

    char const* names[3] = {"query", "key", "value"};
    void* device[4]{};
    size_t bytes[4];
    for (int i = 0; i < 4; ++i)
        bytes[i] = static_cast<size_t>(shapes[i][0] * shapes[i][1] * shapes[i][2] * shapes[i][3]) * elem;
    void* workspace = nullptr;
    bool ok = cudaMalloc(&workspace, workspaceBytes) == cudaSuccess;
    for (int i = 0; i < 4 && ok; ++i)
        ok = cudaMalloc(&device[i], bytes[i]) == cudaSuccess;
    for (int i = 0; i < 3 && ok; ++i)
    {
        std::vector<char> host = readFile(dir + "/" + names[i] + ".bin");
        if (host.size() != bytes[i])
        {
            std::fprintf(stderr, "%s.bin has %zu bytes, expected %zu\n", names[i], host.size(), bytes[i]);
            return 1;
        }
        ok = cudaMemcpy(device[i], host.data(), bytes[i], cudaMemcpyHostToDevice) == cudaSuccess;
    }
    // All-ones bytes are NaN in both FP32 and FP16: any output element not written stays NaN.
    ok = ok && cudaMemset(device[3], 0xFF, bytes[3]) == cudaSuccess;
    ok = ok && cudaMemset(workspace, 0xFF, workspaceBytes) == cudaSuccess;
    cudaStream_t stream{};
    ok = ok && cudaStreamCreate(&stream) == cudaSuccess;
    if (!ok)
    {
        std::fprintf(stderr, "CUDA setup failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    void const* inputs[3] = {device[0], device[1], device[2]};
    void* outputs[1] = {device[3]};
    int32_t const status = runtime->enqueue(descs, descs + 3, inputs, outputs, workspace, stream);
    cudaError_t const syncError = cudaStreamSynchronize(stream);
    if (status != 0 || syncError != cudaSuccess)
    {
        std::fprintf(stderr, "enqueue failed: status %d, %s\n", status, cudaGetErrorString(syncError));
        return 1;
    }
    std::vector<char> result(bytes[3]);
    cudaMemcpy(result.data(), device[3], bytes[3], cudaMemcpyDeviceToHost);
    std::ofstream(dir + "/output.bin", std::ios::binary).write(result.data(), static_cast<std::streamsize>(result.size()));
    for (void* p : device)
        cudaFree(p);
    cudaFree(workspace);
    cudaStreamDestroy(stream);
    return 0;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc < 3)
    {
        std::fprintf(stderr, "usage: %s <libccnet_plugins.so> <check> [args]\n", argv[0]);
        return 2;
    }
    Library lib = openLibrary(argv[1]);
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
        checkWorkspace(lib);
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

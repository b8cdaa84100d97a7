// Seeded, bounded fuzzing of what a plugin library accepts from its callers:
//   fuzz_driver <lib.so> fields  <seed> <cases>   createPlugin with random PluginFieldCollections
//   fuzz_driver <lib.so> forward <seed> <cases>   ccnet_cca_forward with random arguments
// Every case knows what the contract demands: for fields, a plugin exactly when the fields are
// valid, else nullptr and a logged reason; for forward, a result matching a float64 reference
// when the arguments are valid, else a status naming a problem the case really has and an
// untouched output. Every buffer is a heap block of exactly the size the case claims, so an
// AddressSanitizer build reports any read past it. Exit 0 = every case passed, 77 = forward
// needs a CUDA device and there is none.
#include "plugin_library.h"

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace
{
using namespace nvinfer1;
using ccnet::test::Library;
using ccnet::test::DeviceBuffer;
namespace contract = ccnet::contract;

class Random
{
public:
    explicit Random(unsigned long long seed) : mEngine(seed) {}
    // Uniform in [low, high], the same sequence for the same seed on every platform.
    long long between(long long low, long long high)
    {
        unsigned long long const span = static_cast<unsigned long long>(high - low) + 1;
        return low + static_cast<long long>(mEngine() % span);
    }
    bool chance(int percent) { return between(1, 100) <= percent; }
    float uniform(float low, float high)
    {
        return low + (high - low) * static_cast<float>(mEngine() >> 11) * (1.f / 9007199254740992.f);
    }
    std::mt19937_64& engine() { return mEngine; }

private:
    std::mt19937_64 mEngine;
};

// ---- fields ---------------------------------------------------------------------------------
struct FieldsCase
{
    std::vector<std::vector<char>> storage; // every name and data buffer, exactly sized
    std::vector<PluginField> fields;
    enum class Collection
    {
        kNormal,
        kNull,
        kNegativeCount,
        kNullFieldArray
    } collection{Collection::kNormal};
    bool valid{false};
    std::string story;

    char const* keep(std::string const& bytes)
    {
        storage.emplace_back(bytes.begin(), bytes.end());
        return storage.back().data();
    }
    void* keepBytes(size_t count, Random& random)
    {
        storage.emplace_back(std::max<size_t>(count, 1));
        for (char& b : storage.back())
            b = static_cast<char>(random.between(0, 255));
        return storage.back().data();
    }
};

std::string randomText(Random& random, size_t maxLength)
{
    std::string text;
    size_t const length = static_cast<size_t>(random.between(0, static_cast<long long>(maxLength)));
    for (size_t i = 0; i < length; ++i)
        text.push_back(static_cast<char>(random.between('0', 'z')));
    return text;
}

size_t fieldTypeSize(PluginFieldType type)
{
    switch (type)
    {
    case PluginFieldType::kFLOAT64:
    case PluginFieldType::kINT64: return 8;
    case PluginFieldType::kFLOAT32:
    case PluginFieldType::kINT32: return 4;
    case PluginFieldType::kFLOAT16:
    case PluginFieldType::kINT16:
    case PluginFieldType::kBF16: return 2;
    default: return 1;
    }
}

FieldsCase makeFieldsCase(Random& random)
{
    FieldsCase c;
    long long const mode = random.between(0, 19);
    if (mode == 0)
    {
        c.collection = FieldsCase::Collection::kNull;
        c.story = "no collection";
        return c;
    }
    if (mode == 1)
    {
        c.collection = FieldsCase::Collection::kNegativeCount;
        c.story = "negative field count";
        return c;
    }
    if (mode == 2)
    {
        c.collection = FieldsCase::Collection::kNullFieldArray;
        c.story = "field count without a field array";
        return c;
    }
    long long const entries = random.between(0, 3);
    // Mostly start from the valid set, so that valid and nearly valid collections are common.
    bool const startValid = random.chance(60);
    if (startValid)
    {
        for (int i = 0; i < contract::kNbFields; ++i)
        {
            auto const& spec = contract::kFields[i];
            bool const withNul = random.chance(70);
            std::string value = spec.value;
            if (withNul)
                value.push_back('\0');
            c.fields.emplace_back(c.keep(std::string(spec.name) + '\0'), c.keep(value), spec.type,
                static_cast<int32_t>(value.size()));
            c.story += std::string(" valid:") + spec.name;
        }
    }
    for (long long e = 0; e < entries; ++e)
    {
        int const target = static_cast<int>(random.between(0, contract::kNbFields - 1));
        auto const& spec = contract::kFields[target];
        std::string const name = std::string(spec.name) + '\0';
        std::string const value = spec.value;
        switch (random.between(0, 7))
        {
        case 0: // a correct field, maybe a second copy of one already there
        {
            std::string text = value + '\0';
            c.fields.emplace_back(c.keep(name), c.keep(text), spec.type, static_cast<int32_t>(text.size()));
            c.story += std::string(" valid:") + spec.name;
            break;
        }
        case 1: // the right name, another value
        {
            std::string text = randomText(random, 12);
            if (text == value)
                text += "x";
            bool const withNul = random.chance(50);
            if (withNul)
                text.push_back('\0');
            c.fields.emplace_back(c.keep(name), c.keep(text), PluginFieldType::kCHAR, static_cast<int32_t>(text.size()));
            c.story += std::string(" wrong-value:") + spec.name;
            break;
        }
        case 2: // the right name, another type
        {
            PluginFieldType const types[] = {PluginFieldType::kINT32, PluginFieldType::kFLOAT32,
                PluginFieldType::kFLOAT16, PluginFieldType::kINT8, PluginFieldType::kUNKNOWN, PluginFieldType::kINT64};
            PluginFieldType const type = types[random.between(0, 5)];
            int32_t const length = static_cast<int32_t>(random.between(0, 4));
            c.fields.emplace_back(c.keep(name), c.keepBytes(fieldTypeSize(type) * length, random), type, length);
            c.story += std::string(" wrong-type:") + spec.name;
            break;
        }
        case 3: // the right text in a buffer of exactly text + NUL, with a length that lies
        {
            std::string const text = value + '\0';
            long long const lengths[] = {-1, -1000, INT32_MIN, static_cast<long long>(value.size()) - 1,
                static_cast<long long>(text.size()) + 1, static_cast<long long>(text.size()) + 1000, INT32_MAX};
            long long const length = lengths[random.between(0, 6)];
            c.fields.emplace_back(c.keep(name), c.keep(text), spec.type, static_cast<int32_t>(length));
            c.story += std::string(" length ") + std::to_string(length) + ":" + spec.name;
            break;
        }
        case 4: // no data
            c.fields.emplace_back(c.keep(name), nullptr, spec.type, static_cast<int32_t>(random.between(-1, 8)));
            c.story += std::string(" null-data:") + spec.name;
            break;
        case 5: // an unknown name (ignored with a warning)
        {
            std::string unknown = "x_" + randomText(random, 10);
            c.fields.emplace_back(c.keep(unknown + '\0'), c.keep(randomText(random, 6) + '\0'), PluginFieldType::kCHAR,
                static_cast<int32_t>(random.between(0, 3)));
            c.story += " unknown-name";
            break;
        }
        case 6: // no name
            c.fields.emplace_back(nullptr, c.keep(value + '\0'), spec.type, static_cast<int32_t>(value.size() + 1));
            c.story += " null-name";
            break;
        default: // drop one of the fields already there
            if (!c.fields.empty())
            {
                c.fields.erase(c.fields.begin() + random.between(0, static_cast<long long>(c.fields.size()) - 1));
                c.story += " drop";
            }
            break;
        }
    }
    std::shuffle(c.fields.begin(), c.fields.end(), random.engine());
    // Valid exactly when every contract field is given once, as kCHAR, with its value and a
    // length of the text with or without its terminating NUL.
    c.valid = true;
    for (int i = 0; i < contract::kNbFields; ++i)
    {
        auto const& spec = contract::kFields[i];
        int given = 0;
        int correct = 0;
        for (auto const& f : c.fields)
        {
            if (!f.name || std::strcmp(f.name, spec.name) != 0)
                continue;
            ++given;
            size_t const textLength = std::strlen(spec.value);
            bool const lengthOk = f.length == static_cast<int32_t>(textLength)
                || f.length == static_cast<int32_t>(textLength + 1);
            correct += f.type == spec.type && f.data && lengthOk
                && std::memcmp(f.data, spec.value, textLength) == 0
                && (f.length == static_cast<int32_t>(textLength) || static_cast<char const*>(f.data)[textLength] == '\0');
        }
        c.valid = c.valid && given == 1 && correct == 1;
    }
    return c;
}

int fuzzFields(Library const& lib, unsigned long long seed, long long cases)
{
    static ccnet::test::TestLoggerFinder finder;
    finder.logger.echo = false; // thousands of expected refusals
    lib.setLoggerFinder(&finder);
    IPluginCreatorV3One* creator = ccnet::test::findCreator(lib);
    if (!creator)
    {
        std::fprintf(stderr, "FAIL: no CrissCrossAttention creator\n");
        return 1;
    }
    Random random(seed);
    long long failures = 0;
    long long created = 0;
    for (long long i = 0; i < cases; ++i)
    {
        FieldsCase c = makeFieldsCase(random);
        PluginFieldCollection fc{};
        fc.nbFields = static_cast<int32_t>(c.fields.size());
        fc.fields = c.fields.data();
        PluginFieldCollection const* argument = &fc;
        switch (c.collection)
        {
        case FieldsCase::Collection::kNull: argument = nullptr; break;
        case FieldsCase::Collection::kNegativeCount: fc.nbFields = -static_cast<int32_t>(random.between(1, 1000)); break;
        case FieldsCase::Collection::kNullFieldArray:
            fc.nbFields = static_cast<int32_t>(random.between(1, 3));
            fc.fields = nullptr;
            break;
        case FieldsCase::Collection::kNormal: break;
        }
        char const* layerName = random.chance(10) ? nullptr : "fuzz_layer";
        TensorRTPhase const phase = random.chance(50) ? TensorRTPhase::kBUILD : TensorRTPhase::kRUNTIME;
        size_t const before = finder.logger.messages.size();
        ccnet::test::PluginPtr plugin(creator->createPlugin(layerName, argument, phase));
        bool ok = (plugin != nullptr) == c.valid;
        if (ok && !plugin)
            ok = finder.logger.contains("cannot create ccnet::CrissCrossAttention", before);
        if (ok && plugin)
        {
            ++created;
            ccnet::test::PluginPtr copy(plugin->clone());
            ok = copy != nullptr;
        }
        if (!ok)
        {
            ++failures;
            std::fprintf(stderr, "FAIL fields case %lld (seed %llu):%s -> %s (expected %s)\n", i, seed, c.story.c_str(),
                plugin ? "plugin" : "nullptr", c.valid ? "plugin" : "nullptr with a logged reason");
        }
    }
    std::fprintf(stderr, "fields: %lld cases, %lld valid, %lld failed\n", cases, created, failures);
    return failures ? 1 : 0;
}

// ---- forward ----------------------------------------------------------------------------------
// Direct float64 criss-cross attention (docs/mmseg-inference.md): per pixel, one softmax over its column
// (own pixel excluded) and its row (own pixel included).
std::vector<double> reference(std::vector<double> const& q, std::vector<double> const& k, std::vector<double> const& v,
    int n, int cq, int c, int h, int w)
{
    std::vector<double> out(static_cast<size_t>(n) * c * h * w, 0.0);
    auto at = [&](std::vector<double> const& t, int channels, int b, int ch, int y, int x) {
        return t[((static_cast<size_t>(b) * channels + ch) * h + y) * w + x];
    };
    std::vector<double> logits(h + w);
    for (int b = 0; b < n; ++b)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
            {
                double top = -INFINITY;
                for (int i = 0; i < h + w; ++i)
                {
                    bool const column = i < h;
                    int const ky = column ? i : y;
                    int const kx = column ? x : i - h;
                    double e = -INFINITY;
                    if (!column || i != y)
                    {
                        e = 0.0;
                        for (int ch = 0; ch < cq; ++ch)
                            e += at(q, cq, b, ch, y, x) * at(k, cq, b, ch, ky, kx);
                    }
                    logits[i] = e;
                    top = std::max(top, e);
                }
                double total = 0.0;
                for (double& e : logits)
                {
                    e = std::exp(e - top);
                    total += e;
                }
                for (int ch = 0; ch < c; ++ch)
                {
                    double sum = 0.0;
                    for (int i = 0; i < h + w; ++i)
                    {
                        bool const column = i < h;
                        sum += logits[i] * at(v, c, b, ch, column ? i : y, column ? x : i - h);
                    }
                    out[((static_cast<size_t>(b) * c + ch) * h + y) * w + x] = sum / total;
                }
            }
    return out;
}

struct ForwardCase
{
    int n{1}, cq{1}, c{1}, h{1}, w{1};
    int dtype{CCNET_CCA_FP32};
    bool runnableSizes{true}; // small enough that the case allocates real tensors
    int nullPointer{-1};      // 0..4: query, key, value, out, workspace
    bool misaligned{false};
    long long workspaceShortfall{0};
    std::set<int> allowed;    // statuses that name a problem this case has
    std::string story;
};

ForwardCase makeForwardCase(Random& random)
{
    ForwardCase f;
    auto smallDim = [&](int usual) {
        return static_cast<int>(random.chance(85) ? random.between(1, usual) : random.between(usual + 1, 40));
    };
    f.n = static_cast<int>(random.between(1, 2));
    f.cq = static_cast<int>(random.between(1, 20));
    f.c = static_cast<int>(random.between(1, 70));
    f.h = smallDim(12);
    f.w = smallDim(12);
    f.dtype = random.chance(50) ? CCNET_CCA_FP32 : CCNET_CCA_FP16;
    if (random.chance(20))
    {
        // Sizes beyond the kernels' documented limits (n, h, w up to 65535; 63-bit counts).
        f.runnableSizes = false;
        switch (random.between(0, 4))
        {
        case 0: f.n = static_cast<int>(random.between(65536, INT_MAX)); break;
        case 1: f.h = static_cast<int>(random.between(65536, INT_MAX)); break;
        case 2: f.w = static_cast<int>(random.between(65536, INT_MAX)); break;
        case 3: f.n = f.h = f.w = INT_MAX; break;
        default:
            f.n = f.h = f.w = 65535;
            f.c = INT_MAX;
            break;
        }
        f.allowed.insert(CCNET_CCA_PROBLEM_TOO_LARGE);
        f.story += " too-large";
    }
    long long const defects = random.chance(40) ? random.between(1, 2) : 0;
    for (long long d = 0; d < defects; ++d)
    {
        switch (random.between(0, 4))
        {
        case 0:
        {
            int* dims[5] = {&f.n, &f.cq, &f.c, &f.h, &f.w};
            *dims[random.between(0, 4)] = static_cast<int>(random.chance(50) ? 0 : random.between(INT_MIN, -1));
            f.runnableSizes = false;
            f.allowed.insert(CCNET_CCA_BAD_ARGUMENT);
            f.story += " size<1";
            break;
        }
        case 1:
        {
            int const dtypes[] = {-1, 2, 7, INT_MIN, INT_MAX};
            f.dtype = dtypes[random.between(0, 4)];
            f.allowed.insert(CCNET_CCA_BAD_ARGUMENT);
            f.story += " dtype " + std::to_string(f.dtype);
            break;
        }
        case 2:
            f.nullPointer = static_cast<int>(random.between(0, 4));
            f.allowed.insert(CCNET_CCA_BAD_ARGUMENT);
            f.story += " null pointer " + std::to_string(f.nullPointer);
            break;
        case 3:
            f.misaligned = true;
            f.allowed.insert(CCNET_CCA_BAD_ARGUMENT);
            f.story += " misaligned workspace";
            break;
        default:
            f.workspaceShortfall = random.between(1, 64);
            f.allowed.insert(CCNET_CCA_WORKSPACE_TOO_SMALL);
            f.story += " workspace short by " + std::to_string(f.workspaceShortfall);
            break;
        }
    }
    if (f.allowed.empty())
        f.allowed.insert(CCNET_CCA_OK);
    return f;
}

std::string shapeText(ForwardCase const& f)
{
    return std::to_string(f.n) + "x" + std::to_string(f.cq) + "/" + std::to_string(f.c) + "x" + std::to_string(f.h)
        + "x" + std::to_string(f.w) + (f.dtype == CCNET_CCA_FP16 ? " fp16" : " fp32");
}

// Runs one case; returns an empty string when the library did what the contract demands.
std::string runForwardCase(Library const& lib, ForwardCase const& f, Random& random)
{
    bool const half = f.dtype == CCNET_CCA_FP16;
    size_t const elementBytes = half ? 2 : 4;
    size_t const plane = f.runnableSizes ? static_cast<size_t>(f.h) * f.w : 1;
    size_t const count[4] = {f.runnableSizes ? f.n * f.cq * plane : 1, f.runnableSizes ? f.n * f.cq * plane : 1,
        f.runnableSizes ? f.n * f.c * plane : 1, f.runnableSizes ? f.n * f.c * plane : 1};
    // Host values, rounded to the tensor type so the reference sees what the kernels see.
    float const scale = random.chance(50) ? random.uniform(0.05f, 0.3f) : random.uniform(1.f, 3.f);
    std::vector<double> values[3];
    std::vector<char> bytes[4];
    for (int t = 0; t < 4; ++t)
    {
        bytes[t].resize(count[t] * elementBytes);
        for (size_t i = 0; i < count[t]; ++i)
        {
            float x = t < 2 ? random.uniform(-1.f, 1.f) * scale : random.uniform(-1.f, 1.f);
            if (t == 3)
                x = NAN;
            if (half)
            {
                __half const h = __float2half_rn(x);
                std::memcpy(bytes[t].data() + 2 * i, &h, 2);
                x = __half2float(h);
            }
            else
                std::memcpy(bytes[t].data() + 4 * i, &x, 4);
            if (t < 3)
                values[t].push_back(x);
        }
    }
    size_t const needed = f.runnableSizes ? lib.workspaceSize(f.n, f.h, f.w) : 64;
    size_t const provided = f.workspaceShortfall >= static_cast<long long>(needed)
        ? 0
        : needed - static_cast<size_t>(f.workspaceShortfall);
    DeviceBuffer q, k, v, out, workspace;
    DeviceBuffer* tensors[4] = {&q, &k, &v, &out};
    for (int t = 0; t < 4; ++t)
        if (!tensors[t]->allocate(bytes[t].size()))
            std::exit(1);
    if (!workspace.allocate(provided + (f.misaligned ? 8 : 0)))
        std::exit(1);
    for (int t = 0; t < 4; ++t)
        cudaMemcpy(tensors[t]->pointer, bytes[t].data(), bytes[t].size(), cudaMemcpyHostToDevice);
    void* pointers[5] = {q.pointer, k.pointer, v.pointer, out.pointer,
        static_cast<char*>(workspace.pointer) + (f.misaligned ? 4 : 0)};
    if (f.nullPointer >= 0)
        pointers[f.nullPointer] = nullptr;
    int const status = lib.forward(pointers[0], pointers[1], pointers[2], pointers[3], f.n, f.cq, f.c, f.h, f.w,
        f.dtype, pointers[4], provided, nullptr);
    cudaDeviceSynchronize();
    std::vector<char> result(bytes[3].size());
    cudaMemcpy(result.data(), out.pointer, result.size(), cudaMemcpyDeviceToHost);
    if (!f.allowed.count(status))
        return std::string("status '") + ccnet_cca_status_name(status) + "'";
    if (status != CCNET_CCA_OK)
        return result == bytes[3] ? "" : "the output was written although the call failed";

    std::vector<double> const expected = reference(values[0], values[1], values[2], f.n, f.cq, f.c, f.h, f.w);
    double worst = 0.0;
    double largest = 0.0;
    for (size_t i = 0; i < expected.size(); ++i)
    {
        float got;
        if (half)
        {
            __half h;
            std::memcpy(&h, result.data() + 2 * i, 2);
            got = __half2float(h);
        }
        else
            std::memcpy(&got, result.data() + 4 * i, 4);
        if (!std::isfinite(got))
            return "output element " + std::to_string(i) + " is not finite";
        worst = std::max(worst, std::fabs(got - expected[i]));
        largest = std::max(largest, std::fabs(expected[i]));
    }
    double const tolerance = half ? 3e-3 : 1e-5;
    if (worst > tolerance * std::max(largest, 1e-30))
        return "relative error " + std::to_string(worst / largest);
    return "";
}

int fuzzForward(Library const& lib, unsigned long long seed, long long cases)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::fprintf(stderr, "SKIP: no CUDA device\n");
        return 77;
    }
    Random random(seed);
    long long failures = 0;
    long long computed = 0;
    for (long long i = 0; i < cases; ++i)
    {
        ForwardCase const f = makeForwardCase(random);
        std::string const problem = runForwardCase(lib, f, random);
        computed += f.allowed.count(CCNET_CCA_OK) > 0;
        if (!problem.empty())
        {
            ++failures;
            std::fprintf(stderr, "FAIL forward case %lld (seed %llu) %s:%s -> %s\n", i, seed, shapeText(f).c_str(),
                f.story.c_str(), problem.c_str());
        }
    }
    std::fprintf(stderr, "forward: %lld cases, %lld computed and compared, %lld failed\n", cases, computed, failures);
    return failures ? 1 : 0;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc != 5)
    {
        std::fprintf(stderr, "usage: %s <plugin library> fields|forward <seed> <cases>\n", argv[0]);
        return 2;
    }
    Library const lib = ccnet::test::openLibrary(argv[1]);
    std::string const what = argv[2];
    unsigned long long const seed = std::strtoull(argv[3], nullptr, 10);
    long long const cases = std::atoll(argv[4]);
    if (what == "fields")
        return fuzzFields(lib, seed, cases);
    if (what == "forward")
        return fuzzForward(lib, seed, cases);
    std::fprintf(stderr, "unknown fuzzer '%s'\n", what.c_str());
    return 2;
}

#include "block_runner.h"

#include <cstdio>
#include <cstdlib>

namespace ccnet::cuda_cpu
{
namespace
{
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kFiberStackBytes = 512 * 1024; // AddressSanitizer's frames are larger
#else
constexpr std::size_t kFiberStackBytes = 128 * 1024;
#endif

thread_local BlockRunner* tRunning = nullptr;

BlockRunner& runningOrTrap(char const* what)
{
    if (!tRunning)
    {
        std::fprintf(stderr, "CUDA CPU mode: %s called outside a kernel\n", what);
        std::abort();
    }
    return *tRunning;
}
} // namespace

BlockRunner& BlockRunner::ofThisThread()
{
    thread_local BlockRunner runner;
    return runner;
}

void BlockRunner::ensureThreads(int count)
{
    while (static_cast<int>(mThreads.size()) < count)
    {
        auto thread = std::make_unique<Thread>();
        thread->runner = this;
        thread->stack = std::make_unique<FiberStack>(kFiberStackBytes);
        prepareFiber(thread->context, *thread->stack, &BlockRunner::fiberMain, thread.get());
        mThreads.push_back(std::move(thread));
    }
    int const warps = (count + kWarpSize - 1) / kWarpSize;
    if (static_cast<int>(mExchange.size()) < warps)
    {
        mExchange.resize(warps);
        mExchangeGeneration.resize(warps);
    }
}

void BlockRunner::fiberMain(void* argument)
{
    auto& thread = *static_cast<Thread*>(argument);
    BlockRunner& runner = *thread.runner;
    enterFiber(runner.mScheduler);
    // A fiber serves one CUDA thread of every block this runner executes: after the kernel
    // body returns it parks here until the next block resumes it.
    for (;;)
    {
        runner.mKernel.invoke(runner.mKernel.closure);
        thread.state = State::kExited;
        switchFiber(thread.context, runner.mScheduler);
    }
}

void BlockRunner::resume(Thread& thread)
{
    mCurrent = &thread;
    switchFiber(mScheduler, thread.context);
    mCurrent = nullptr;
}

void BlockRunner::run(KernelInvocation const& kernel, dim3 grid, dim3 block, uint3 blockIndex)
{
    mKernel = kernel;
    mGridDim = grid;
    mBlockDim = block;
    mBlockIndex = blockIndex;
    int const threadCount = static_cast<int>(block.x * block.y * block.z);
    ensureThreads(threadCount);
    for (int t = 0; t < threadCount; ++t)
    {
        Thread& thread = *mThreads[t];
        unsigned const linear = static_cast<unsigned>(t);
        thread.index = uint3{linear % block.x, (linear / block.x) % block.y, linear / (block.x * block.y)};
        thread.lane = t % kWarpSize;
        thread.warp = t / kWarpSize;
        thread.state = State::kRunnable;
    }
    int const warps = (threadCount + kWarpSize - 1) / kWarpSize;
    for (int w = 0; w < warps; ++w)
        mExchangeGeneration[w] = 0;

    tRunning = this;
    for (;;)
    {
        for (int w = 0; w < warps; ++w)
            runWarpUntilBlockBarrier(w, threadCount);
        // Every live thread now waits at __syncthreads(): release them together.
        bool anyWaiting = false;
        for (int t = 0; t < threadCount; ++t)
        {
            if (mThreads[t]->state == State::kAtBlockBarrier)
            {
                mThreads[t]->state = State::kRunnable;
                anyWaiting = true;
            }
        }
        if (!anyWaiting)
            break;
    }
    tRunning = nullptr;
}

void BlockRunner::runWarpUntilBlockBarrier(int warp, int threadCount)
{
    int const first = warp * kWarpSize;
    int const last = first + kWarpSize < threadCount ? first + kWarpSize : threadCount;
    for (;;)
    {
        for (int t = first; t < last; ++t)
        {
            if (mThreads[t]->state == State::kRunnable)
                resume(*mThreads[t]);
        }
        int exchanging = 0;
        for (int t = first; t < last; ++t)
            exchanging += mThreads[t]->state == State::kAtWarpExchange;
        if (exchanging == 0)
            return;
        if (exchanging != kWarpSize)
        {
            Thread* waiting = nullptr;
            for (int t = first; t < last && !waiting; ++t)
                waiting = mThreads[t]->state == State::kAtWarpExchange ? mThreads[t].get() : nullptr;
            mCurrent = waiting;
            trap("__shfl_xor_sync with the full-warp mask reached by " + std::to_string(exchanging)
                + " of 32 lanes; the others exited or wait at __syncthreads() (divergent warp shuffle)");
        }
        ++mExchangeGeneration[warp];
        for (int t = first; t < last; ++t)
            mThreads[t]->state = State::kRunnable;
    }
}

uint3 BlockRunner::threadIndex() const
{
    return mCurrent->index;
}

void BlockRunner::syncThreads()
{
    Thread& self = *mCurrent;
    self.state = State::kAtBlockBarrier;
    switchFiber(self.context, mScheduler);
}

std::uint64_t BlockRunner::shuffleXor(std::uint64_t bits, unsigned int mask, int laneMask, int width)
{
    if (mask != 0xFFFFFFFFu)
        trap("__shfl_xor_sync with a partial lane mask is not supported by the CPU mode");
    if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0)
        trap("__shfl_xor_sync width must be a power of two up to 32");
    Thread& self = *mCurrent;
    std::uint32_t const generation = mExchangeGeneration[self.warp];
    auto& slots = mExchange[self.warp][generation & 1u];
    slots[self.lane] = bits;
    self.state = State::kAtWarpExchange;
    switchFiber(self.context, mScheduler);
    int source = self.lane ^ (laneMask & (kWarpSize - 1));
    // Lanes may read from their own or earlier groups of `width` lanes, not from later ones.
    if (source / width > self.lane / width)
        source = self.lane;
    return slots[source];
}

void BlockRunner::trap(std::string const& what) const
{
    std::string where;
    if (mCurrent)
    {
        uint3 const t = mCurrent->index;
        where = " (block " + std::to_string(mBlockIndex.x) + "," + std::to_string(mBlockIndex.y) + ","
            + std::to_string(mBlockIndex.z) + ", thread " + std::to_string(t.x) + "," + std::to_string(t.y) + ","
            + std::to_string(t.z) + ")";
    }
    std::fprintf(stderr, "CUDA CPU mode: %s%s\n", what.c_str(), where.c_str());
    std::fflush(stderr);
    std::abort();
}

uint3 threadIndex()
{
    return runningOrTrap("threadIdx").threadIndex();
}

uint3 blockIndex()
{
    return runningOrTrap("blockIdx").blockIndex();
}

dim3 blockDimension()
{
    return runningOrTrap("blockDim").blockShape();
}

dim3 gridDimension()
{
    return runningOrTrap("gridDim").gridShape();
}

void syncThreads()
{
    runningOrTrap("__syncthreads()").syncThreads();
}

std::uint64_t shuffleXorBits(std::uint64_t bits, unsigned int mask, int laneMask, int width)
{
    return runningOrTrap("__shfl_xor_sync()").shuffleXor(bits, mask, laneMask, width);
}

void sharedIndexOutOfRange(long long index, long long extent)
{
    runningOrTrap("a __shared__ array")
        .trap("__shared__ array index " + std::to_string(index) + " outside [0, " + std::to_string(extent) + ")");
}
} // namespace ccnet::cuda_cpu

// Runs one thread block of a kernel on the calling OS thread: one fiber per CUDA thread, with
// __syncthreads() and warp shuffles as rendezvous points between them.
#pragma once

#include "fiber.h"

#include <cuda_cpu_device.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ccnet::cuda_cpu
{
class BlockRunner
{
public:
    static constexpr int kWarpSize = 32;

    // The runner of the calling OS thread (created on first use, reused for every block).
    static BlockRunner& ofThisThread();

    void run(KernelInvocation const& kernel, dim3 grid, dim3 block, uint3 blockIndex);

    // Called from inside the kernel, on the current thread's fiber.
    uint3 threadIndex() const;
    uint3 blockIndex() const { return mBlockIndex; }
    dim3 blockShape() const { return mBlockDim; }
    dim3 gridShape() const { return mGridDim; }
    void syncThreads();
    std::uint64_t shuffleXor(std::uint64_t bits, unsigned int mask, int laneMask, int width);
    [[noreturn]] void trap(std::string const& what) const;

private:
    enum class State
    {
        kRunnable,
        kAtBlockBarrier,
        kAtWarpExchange,
        kExited
    };

    struct Thread
    {
        BlockRunner* runner{};
        std::unique_ptr<FiberStack> stack;
        FiberContext context;
        State state{State::kExited};
        uint3 index{};
        int lane{};
        int warp{};
    };

    // Two buffers per warp: lanes released from one exchange write their next value into the
    // other buffer, so nobody overwrites a value a slower lane has still to read.
    using WarpExchange = std::array<std::array<std::uint64_t, kWarpSize>, 2>;

    static void fiberMain(void* thread);
    void ensureThreads(int count);
    void resume(Thread& thread);
    void runWarpUntilBlockBarrier(int warp, int threadCount);

    KernelInvocation mKernel{};
    dim3 mGridDim{};
    dim3 mBlockDim{};
    uint3 mBlockIndex{};
    FiberContext mScheduler;
    Thread* mCurrent{};
    std::vector<std::unique_ptr<Thread>> mThreads;
    std::vector<WarpExchange> mExchange;
    std::vector<std::uint32_t> mExchangeGeneration;
};
} // namespace ccnet::cuda_cpu

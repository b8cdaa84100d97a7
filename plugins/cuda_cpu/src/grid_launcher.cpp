// Runs a kernel's grid: checks the launch configuration against the GPU's limits, then
// hands the blocks out to a pool of worker threads (the launching thread is one of them).
// Each worker runs whole blocks through its own BlockRunner.
#include "block_runner.h"
#include "last_error.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ccnet::cuda_cpu
{
namespace
{
// Limits of every GPU this project builds for (compute capability 7.5 to 9.0).
constexpr unsigned long long kMaxThreadsPerBlock = 1024;
constexpr unsigned long long kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned long long kMaxGridDim[3] = {2147483647ull, 65535, 65535};

bool validConfiguration(dim3 grid, dim3 block)
{
    unsigned long long const g[3] = {grid.x, grid.y, grid.z};
    unsigned long long const b[3] = {block.x, block.y, block.z};
    for (int i = 0; i < 3; ++i)
    {
        if (g[i] < 1 || g[i] > kMaxGridDim[i] || b[i] < 1 || b[i] > kMaxBlockDim[i])
            return false;
    }
    return b[0] * b[1] * b[2] <= kMaxThreadsPerBlock;
}

class WorkerPool
{
public:
    static WorkerPool& instance()
    {
        static WorkerPool pool;
        return pool;
    }

    void run(KernelInvocation const& kernel, dim3 grid, dim3 block)
    {
        std::lock_guard<std::mutex> oneLaunchAtATime(mLaunchMutex);
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mKernel = kernel;
            mGrid = grid;
            mBlock = block;
            mBlockCount = static_cast<long long>(grid.x) * grid.y * grid.z;
            mNextBlock.store(0);
            mBusyWorkers = static_cast<int>(mWorkers.size());
            ++mJob;
        }
        mWake.notify_all();
        runBlocks();
        std::unique_lock<std::mutex> lock(mMutex);
        mDone.wait(lock, [this] { return mBusyWorkers == 0; });
    }

    ~WorkerPool()
    {
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mStopping = true;
        }
        mWake.notify_all();
        for (auto& worker : mWorkers)
            worker.join();
    }

private:
    WorkerPool()
    {
        unsigned const cores = std::max(1u, std::thread::hardware_concurrency());
        for (unsigned i = 1; i < cores; ++i)
            mWorkers.emplace_back([this] { workerLoop(); });
    }

    void runBlocks()
    {
        BlockRunner& runner = BlockRunner::ofThisThread();
        for (;;)
        {
            long long const linear = mNextBlock.fetch_add(1);
            if (linear >= mBlockCount)
                return;
            // x varies fastest, as in CUDA's block numbering.
            long long const planeBlocks = static_cast<long long>(mGrid.x) * mGrid.y;
            uint3 const index{static_cast<unsigned>(linear % mGrid.x), static_cast<unsigned>((linear / mGrid.x) % mGrid.y),
                static_cast<unsigned>(linear / planeBlocks)};
            runner.run(mKernel, mGrid, mBlock, index);
        }
    }

    void workerLoop()
    {
        unsigned long long seenJob = 0;
        for (;;)
        {
            {
                std::unique_lock<std::mutex> lock(mMutex);
                mWake.wait(lock, [&] { return mStopping || mJob != seenJob; });
                if (mStopping)
                    return;
                seenJob = mJob;
            }
            runBlocks();
            {
                std::lock_guard<std::mutex> lock(mMutex);
                --mBusyWorkers;
            }
            mDone.notify_all();
        }
    }

    std::mutex mLaunchMutex;
    std::mutex mMutex;
    std::condition_variable mWake;
    std::condition_variable mDone;
    std::vector<std::thread> mWorkers;
    bool mStopping{false};
    unsigned long long mJob{0};
    int mBusyWorkers{0};
    KernelInvocation mKernel{};
    dim3 mGrid{};
    dim3 mBlock{};
    long long mBlockCount{0};
    std::atomic<long long> mNextBlock{0};
};
} // namespace

void launchGrid(KernelInvocation const& kernel, dim3 grid, dim3 block)
{
    if (!validConfiguration(grid, block))
    {
        setLastError(cudaErrorInvalidConfiguration);
        return;
    }
    WorkerPool::instance().run(kernel, grid, block);
}
} // namespace ccnet::cuda_cpu

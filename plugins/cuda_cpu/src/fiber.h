// Fibers: execution contexts with their own stacks, switched cooperatively in user space.
// The block runner gives every CUDA thread of a block one fiber, so a thread can stop at
// __syncthreads() or a warp shuffle and let the others catch up, all on one OS thread.
#pragma once

#include <cstddef>

namespace ccnet::cuda_cpu
{
// A stack mapped with an inaccessible guard page below it: overflowing it faults at once
// instead of corrupting a neighbour's stack.
class FiberStack
{
public:
    explicit FiberStack(std::size_t bytes);
    ~FiberStack();
    FiberStack(FiberStack const&) = delete;
    FiberStack& operator=(FiberStack const&) = delete;

    void* bottom() const { return mUsable; }
    std::size_t size() const { return mUsableBytes; }

private:
    void* mMapping{};
    std::size_t mMappingBytes{};
    void* mUsable{};
    std::size_t mUsableBytes{};
};

// Where a suspended context continues; also describes its stack for AddressSanitizer.
struct FiberContext
{
    void* stackPointer{};
    void const* stackBottom{};
    std::size_t stackSize{};
};

// Makes `context` start `entry(argument)` on `stack` the first time it is switched to.
// `entry` must never return: a fiber ends by switching away for good.
void prepareFiber(FiberContext& context, FiberStack const& stack, void (*entry)(void*), void* argument);

// Suspends the running context into `from` and resumes `to`; returns when something
// switches back to `from`.
void switchFiber(FiberContext& from, FiberContext const& to);

// First call inside a freshly started fiber: completes the switch into it and records the
// stack it came from in `caller` (used by AddressSanitizer to follow the stack change).
void enterFiber(FiberContext& caller);
} // namespace ccnet::cuda_cpu

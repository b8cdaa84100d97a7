#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#define CCNET_FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CCNET_FIBER_ASAN 1
#endif
#endif

#if defined(CCNET_FIBER_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "the CUDA CPU mode switches fibers with x86-64 code; other architectures are not supported"
#endif

// A fiber switch saves the callee-saved registers and the floating-point control words on
// the running stack, stores the stack pointer, loads the other one and restores the same
// set from it. No system call: glibc's swapcontext() makes one per switch (it saves the signal
// mask), and a block switches fibers at every barrier and shuffle of each of its threads.
//
// Saved frame, from the stored stack pointer upwards: MXCSR and x87 control word (8 bytes),
// r15, r14, r13, r12, rbx, rbp, return address.
asm(R"(
    .text
    .p2align 4
    .globl ccnet_cuda_cpu_switch_stack
    .hidden ccnet_cuda_cpu_switch_stack
    .type ccnet_cuda_cpu_switch_stack, @function
ccnet_cuda_cpu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ccnet_cuda_cpu_switch_stack, .-ccnet_cuda_cpu_switch_stack

    .p2align 4
    .globl ccnet_cuda_cpu_fiber_start
    .hidden ccnet_cuda_cpu_fiber_start
    .type ccnet_cuda_cpu_fiber_start, @function
ccnet_cuda_cpu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size ccnet_cuda_cpu_fiber_start, .-ccnet_cuda_cpu_fiber_start
)");

extern "C" void ccnet_cuda_cpu_switch_stack(void** save, void* load);
extern "C" void ccnet_cuda_cpu_fiber_start();

namespace ccnet::cuda_cpu
{
namespace
{
[[noreturn]] void fatal(char const* what)
{
    std::fprintf(stderr, "CUDA CPU mode: %s\n", what);
    std::abort();
}

constexpr std::uint32_t kDefaultMxcsr = 0x1F80; // all exceptions masked, round to nearest
constexpr std::uint16_t kDefaultX87ControlWord = 0x037F;
} // namespace

FiberStack::FiberStack(std::size_t bytes)
{
    std::size_t const page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    mUsableBytes = (bytes + page - 1) / page * page;
    mMappingBytes = mUsableBytes + page;
    mMapping = mmap(nullptr, mMappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mMapping == MAP_FAILED)
        fatal("cannot map a fiber stack");
    if (mprotect(mMapping, page, PROT_NONE) != 0)
        fatal("cannot protect a fiber stack's guard page");
    mUsable = static_cast<char*>(mMapping) + page;
}

FiberStack::~FiberStack()
{
    munmap(mMapping, mMappingBytes);
}

void prepareFiber(FiberContext& context, FiberStack const& stack, void (*entry)(void*), void* argument)
{
    auto top = reinterpret_cast<std::uintptr_t>(stack.bottom()) + stack.size();
    top &= ~std::uintptr_t{15};
    // ccnet_cuda_cpu_switch_stack pops this frame and "returns" into ccnet_cuda_cpu_fiber_start
    // with the stack 16-byte aligned, as the call inside it requires.
    auto* frame = reinterpret_cast<std::uint64_t*>(top - 64);
    frame[0] = kDefaultMxcsr | (std::uint64_t{kDefaultX87ControlWord} << 32);
    frame[1] = 0;                                            // r15
    frame[2] = 0;                                            // r14
    frame[3] = reinterpret_cast<std::uint64_t>(entry);      // r13
    frame[4] = reinterpret_cast<std::uint64_t>(argument);   // r12
    frame[5] = 0;                                            // rbx
    frame[6] = 0;                                            // rbp
    frame[7] = reinterpret_cast<std::uint64_t>(&ccnet_cuda_cpu_fiber_start);
    context.stackPointer = frame;
    context.stackBottom = stack.bottom();
    context.stackSize = stack.size();
}

void switchFiber(FiberContext& from, FiberContext const& to)
{
#if defined(CCNET_FIBER_ASAN)
    void* fakeStack = nullptr;
    __sanitizer_start_switch_fiber(&fakeStack, to.stackBottom, to.stackSize);
    ccnet_cuda_cpu_switch_stack(&from.stackPointer, to.stackPointer);
    __sanitizer_finish_switch_fiber(fakeStack, nullptr, nullptr);
#else
    ccnet_cuda_cpu_switch_stack(&from.stackPointer, to.stackPointer);
#endif
}

void enterFiber(FiberContext& caller)
{
#if defined(CCNET_FIBER_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &caller.stackBottom, &caller.stackSize);
#else
    (void) caller;
#endif
}
} // namespace ccnet::cuda_cpu

#include "nnsqueeze/parallel.hpp"

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

namespace nnsqueeze {

void run_parallel(std::size_t count, int threads, std::size_t work_per_item,
                  void (*fn)(void* ctx, std::size_t begin, std::size_t end), void* ctx) {
    std::size_t t = threads > 1 ? static_cast<std::size_t>(threads) : 1;
    t = std::min(t, count);
    // A thread start costs tens of microseconds: not worth it below ~2^17 units of work
    // (multiply-adds of a kernel, bytes of a coder).
    if (count * std::max<std::size_t>(work_per_item, 1) < (std::size_t(1) << 17)) t = 1;
    if (t <= 1) {
        if (count) fn(ctx, 0, count);
        return;
    }
    std::vector<std::exception_ptr> errors(t);
    std::vector<std::thread> pool;
    pool.reserve(t - 1);
    auto range = [&](std::size_t i) {
        const std::size_t b = count * i / t, e = count * (i + 1) / t;
        try {
            if (b < e) fn(ctx, b, e);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    };
    for (std::size_t i = 1; i < t; ++i) {
        try {
            pool.emplace_back(range, i);
        } catch (...) {  // no more threads: run that range here
            range(i);
        }
    }
    range(0);
    for (auto& th : pool) th.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace nnsqueeze

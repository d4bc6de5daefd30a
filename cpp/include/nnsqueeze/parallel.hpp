// Splitting work over threads, shared by the coders (chunks of one tensor) and the sparse kernels (rows).
#pragma once

#include <cstddef>
#include <type_traits>

namespace nnsqueeze {

// Runs fn(ctx, begin, end) over [0, count) split into contiguous ranges on up to `threads`
// threads; one thread when count * work_per_item is too small to pay for starting threads.
// The first exception thrown by any range is rethrown after all threads finished.
void run_parallel(std::size_t count, int threads, std::size_t work_per_item,
                  void (*fn)(void* ctx, std::size_t begin, std::size_t end), void* ctx);

// run_parallel for a callable f(begin, end).
template <class F>
void parallel_ranges(std::size_t count, int threads, std::size_t work_per_item, F&& f) {
    run_parallel(
        count, threads, work_per_item,
        [](void* ctx, std::size_t b, std::size_t e) { (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e); },
        &f);
}

}  // namespace nnsqueeze

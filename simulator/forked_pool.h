// Runs independent work items (a scenario seed each) on several worker processes, so a soak uses every
// core while each run stays single-threaded and deterministic. Workers are forked: a run shares nothing
// with another, and a worker that dies (an abort in a run) costs only its unfinished items, which are
// reported as such. Only chorus-sim uses this; nothing above the seam does.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

namespace chorus::sim {

// Calls work(i) for i in [0, count) on `jobs` processes (item i on worker i % jobs, in order) and
// done(i, result) in this process as results arrive: `result` is what work(i) returned, or nullopt when
// the worker died in item i (an abort, a crash, or longer than item_seconds_max: a new worker then takes
// the rest of its share). With jobs <= 1 everything
// runs here, in order.
// On a worker, an item that runs longer than item_seconds_max is killed (SIGALRM) and reported missing.
void run_forked(size_t count, int jobs, const std::function<std::string(size_t)>& work,
                const std::function<void(size_t, const std::optional<std::string>&)>& done, int item_seconds_max = 600);

}  // namespace chorus::sim

// Applies a fault schedule (fault/schedule.h) to a simulated cluster: each fault becomes a kernel
// action at its time. Node numbers in the schedule are kernel node indices. Only simulator/ and tests.
#pragma once

#include "fault/schedule.h"
#include "simulator/kernel.h"

namespace chorus::sim {

// Applies a network or process fault now; false (and nothing done) for the scenario runner's operations.
bool apply_fault(Kernel& kernel, const fault::Fault& fault);
// Schedules every fault; a schedule that check_schedule() refuses is not applied and its problems are
// returned instead.
std::vector<std::string> schedule_faults(Kernel& kernel, const fault::FaultSchedule& schedule);

}  // namespace chorus::sim

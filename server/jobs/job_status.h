// A job's status (Mattermost's names, stored as text in Jobs.Status). The job server's fencing rules are
// SQL conditions on it; they name a status with sql(), so every status in a statement is one of these.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace chorus::jobs {

enum class JobStatus { pending, in_progress, success, error, cancel_requested, canceled, warning };

inline constexpr std::array<std::pair<JobStatus, std::string_view>, 7> kJobStatuses{{
    {JobStatus::pending, "pending"},
    {JobStatus::in_progress, "in_progress"},
    {JobStatus::success, "success"},
    {JobStatus::error, "error"},
    {JobStatus::cancel_requested, "cancel_requested"},
    {JobStatus::canceled, "canceled"},
    {JobStatus::warning, "warning"},
}};

constexpr std::string_view name(JobStatus s) {
  for (const auto& [status, n] : kJobStatuses)
    if (status == s) return n;
  return {};
}

// The status stored as `text`; nullopt for anything else.
constexpr std::optional<JobStatus> job_status(std::string_view text) {
  for (const auto& [status, n] : kJobStatuses)
    if (n == text) return status;
  return std::nullopt;
}

// The status as an SQL literal ('pending'), for the statements that test or set it.
inline std::string sql(JobStatus s) { return "'" + std::string(name(s)) + "'"; }

}  // namespace chorus::jobs

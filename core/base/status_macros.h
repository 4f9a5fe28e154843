// Early-return helpers for absl::Status / absl::StatusOr (Debian 12's Abseil does not ship the
// upstream macros).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define STACKPROC_CONCAT_INNER_(a, b) a##b
#define STACKPROC_CONCAT_(a, b) STACKPROC_CONCAT_INNER_(a, b)

// Returns `expr` from the calling function if it is not OK.
#define STACKPROC_RETURN_IF_ERROR(expr)           \
  do {                                            \
    if (::absl::Status _st = (expr); !_st.ok()) { \
      return _st;                                 \
    }                                             \
  } while (false)

// `lhs = *expr` when `expr` (a StatusOr) is OK; otherwise returns its status.
#define STACKPROC_ASSIGN_OR_RETURN(lhs, expr) \
  STACKPROC_ASSIGN_OR_RETURN_IMPL_(STACKPROC_CONCAT_(_statusor_, __LINE__), lhs, expr)

#define STACKPROC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                     \
  if (!tmp.ok()) return std::move(tmp).status();         \
  lhs = std::move(tmp).value()

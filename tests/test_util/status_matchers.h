// gtest helpers for absl::Status (Debian 12's Abseil ships no status matchers).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stackproc::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// EXPECT_THAT(DoIt(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slice 3")));
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(status.message()),
                                       result_listener);
}

// EXPECT_THAT(ParsePixelType("uint16"), IsOkAndHolds(core::PixelType::kUint16));
MATCHER_P(IsOkAndHolds, value, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return *arg == value;
}

}  // namespace stackproc::testing

#define STACKPROC_TEST_CONCAT_INNER_(a, b) a##b
#define STACKPROC_TEST_CONCAT_(a, b) STACKPROC_TEST_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr)                                                \
  do {                                                                 \
    const auto& _result = (expr); /* a temporary lives to the end */   \
    const absl::Status& _s = ::stackproc::testing::GetStatus(_result); \
    ASSERT_TRUE(_s.ok()) << _s.ToString();                             \
  } while (false)

#define EXPECT_OK(expr)                                                \
  do {                                                                 \
    const auto& _result = (expr); /* a temporary lives to the end */   \
    const absl::Status& _s = ::stackproc::testing::GetStatus(_result); \
    EXPECT_TRUE(_s.ok()) << _s.ToString();                             \
  } while (false)

#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(STACKPROC_TEST_CONCAT_(_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)  \
  auto tmp = (expr);                                \
  ASSERT_TRUE(tmp.ok()) << tmp.status().ToString(); \
  lhs = std::move(tmp).value()

// The operations a pipeline may name, and the text form that names them:
// "name:key=value,key=value", e.g. "gaussian:ksize=5", "resize:scale=0.5,interp=area".
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/pipeline/operation.h"

namespace stackproc::core {

// One operation as the user wrote it, not yet validated.
// The grammar is parsed and printed here and nowhere else; programs carry OpSpecs.
struct OpSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> params;  // in the order given

  friend bool operator==(const OpSpec&, const OpSpec&) = default;
};

// Parses the text form. InvalidArgument for a malformed text (empty name, "key" without "=").
absl::StatusOr<OpSpec> ParseOpSpec(absl::string_view text);
// Every text, in order; the first malformed one is named with its position ("operation 2: ...").
absl::StatusOr<std::vector<OpSpec>> ParseOpSpecs(const std::vector<std::string>& texts);
std::string FormatOpSpec(const OpSpec& spec);
// What a job's empty pipeline is called wherever it is shown (it converts, at most).
inline constexpr char kNoOperations[] = "(none: a conversion)";
// "gaussian:ksize=5 -> clahe"; kNoOperations for an empty list.
std::string FormatOpSpecs(const std::vector<OpSpec>& specs);

// Not thread-safe to modify; const access is thread-safe.
class OperationRegistry {
 public:
  // AlreadyExists for a duplicate name; InvalidArgument when a default violates its own spec.
  absl::Status Register(OperationDef def);

  const OperationDef* Find(absl::string_view name) const;
  // All operations, ordered by name.
  std::vector<const OperationInfo*> List() const;

  // Validates `spec` against the operation's parameter specs (unknown operation, unknown or
  // repeated parameter, unparsable or out-of-range value: InvalidArgument saying what is
  // allowed) and configures the operation, which reads the files its parameters name with
  // `images` (unset: it can read none).
  absl::StatusOr<std::unique_ptr<SliceOp>> Create(const OpSpec& spec,
                                                  ImageReader images = {}) const;

  // `spec` with every parameter its operation declares, in the order declared: the value given,
  // or the default (unless only_when_given). The spec's own errors, as Create's (unknown
  // operation or parameter, a bad value); the op is not made (no file is read).
  absl::StatusOr<OpSpec> Complete(const OpSpec& spec) const;

  // The registry holding every built-in operation.
  static const OperationRegistry& Builtin();

 private:
  absl::StatusOr<ParamValues> Resolve(const OperationInfo& info, const OpSpec& spec) const;
  std::map<std::string, OperationDef, std::less<>> ops_;
};

// Registers every built-in operation, explicitly (no static self-registration).
void RegisterBuiltinOperations(OperationRegistry& registry);

}  // namespace stackproc::core

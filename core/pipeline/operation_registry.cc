#include "core/pipeline/operation_registry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"

namespace stackproc::core {

absl::StatusOr<OpSpec> ParseOpSpec(absl::string_view text) {
  OpSpec spec;
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  size_t colon = rest.find(':');
  spec.name = std::string(absl::StripAsciiWhitespace(rest.substr(0, colon)));
  if (spec.name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("operation '", text, "' has no name (form: name:key=value,key=value)"));
  }
  if (colon == absl::string_view::npos) return spec;
  for (absl::string_view item : absl::StrSplit(rest.substr(colon + 1), ',', absl::SkipEmpty())) {
    size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("operation '", text, "': parameter '", item,
                                                     "' has no value (form: key=value)"));
    }
    spec.params.emplace_back(std::string(absl::StripAsciiWhitespace(item.substr(0, eq))),
                             std::string(absl::StripAsciiWhitespace(item.substr(eq + 1))));
  }
  return spec;
}

absl::StatusOr<std::vector<OpSpec>> ParseOpSpecs(const std::vector<std::string>& texts) {
  std::vector<OpSpec> specs;
  for (const std::string& text : texts) {
    absl::StatusOr<OpSpec> spec = ParseOpSpec(text);
    if (!spec.ok()) {
      return absl::Status(spec.status().code(), absl::StrCat("operation ", specs.size() + 1, ": ",
                                                             spec.status().message()));
    }
    specs.push_back(*std::move(spec));
  }
  return specs;
}

std::string FormatOpSpec(const OpSpec& spec) {
  if (spec.params.empty()) return spec.name;
  return absl::StrCat(spec.name, ":", absl::StrJoin(spec.params, ",", absl::PairFormatter("=")));
}

std::string FormatOpSpecs(const std::vector<OpSpec>& specs) {
  if (specs.empty()) return kNoOperations;
  return absl::StrJoin(
      specs, " -> ", [](std::string* out, const OpSpec& spec) { out->append(FormatOpSpec(spec)); });
}

absl::Status OperationRegistry::Register(OperationDef def) {
  std::string name = def.info.name;
  if (ops_.count(name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("operation '", name, "' is registered twice"));
  }
  // Every default must satisfy its own spec: a typo here would otherwise surface only in use.
  STACKPROC_RETURN_IF_ERROR(Resolve(def.info, OpSpec{name, {}}).status());
  ops_.emplace(std::move(name), std::move(def));
  return absl::OkStatus();
}

const OperationDef* OperationRegistry::Find(absl::string_view name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<const OperationInfo*> OperationRegistry::List() const {
  std::vector<const OperationInfo*> infos;
  for (const auto& [name, def] : ops_) infos.push_back(&def.info);
  return infos;
}

absl::StatusOr<ParamValues> OperationRegistry::Resolve(const OperationInfo& info,
                                                       const OpSpec& spec) const {
  ParamValues values;
  for (const auto& [key, value] : spec.params) {
    auto it = std::find_if(info.params.begin(), info.params.end(),
                           [&key = key](const ParamSpec& p) { return p.name == key; });
    if (it == info.params.end()) {
      std::vector<absl::string_view> names;
      for (const ParamSpec& p : info.params) names.push_back(p.name);
      return absl::InvalidArgumentError(absl::StrCat(
          info.name, " has no parameter '", key,
          "' (parameters: ", names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
    }
    if (!values.given_.emplace(key, true).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.name, ": parameter '", key, "' is given twice"));
    }
    values.text_[key] = value;
  }
  for (const ParamSpec& p : info.params) {
    auto [it, inserted] = values.text_.emplace(p.name, p.default_value);
    const std::string& text = it->second;
    auto bad = [&] {
      return absl::InvalidArgumentError(absl::StrCat(info.name, ": ", p.name, "=", text,
                                                     " is not valid (", p.name, ": ",
                                                     p.AllowedText(), ")"));
    };
    switch (p.type) {
      case ParamType::kInt: {
        int64_t v = 0;
        if (!absl::SimpleAtoi(text, &v) || v < p.min || v > p.max) return bad();
        values.numbers_[p.name] = static_cast<double>(v);
        break;
      }
      case ParamType::kDouble: {
        double v = 0;
        if (!absl::SimpleAtod(text, &v) || !std::isfinite(v) || v < p.min || v > p.max) {
          return bad();
        }
        values.numbers_[p.name] = v;
        break;
      }
      case ParamType::kChoice:
        if (std::find(p.choices.begin(), p.choices.end(), text) == p.choices.end()) return bad();
        break;
      case ParamType::kFile:  // read by the op; absent unless given. A ',' would end it in
                              // the text form, which records and cluster tasks carry.
        if (values.IsSet(p.name) && (text.empty() || text.find(',') != std::string::npos)) {
          return bad();
        }
        break;
    }
    if (!p.unused_with.empty() && values.IsSet(p.name) && values.IsSet(p.unused_with)) {
      return absl::InvalidArgumentError(absl::StrCat(info.name, ": ", p.name,
                                                     " means nothing beside ", p.unused_with,
                                                     ": give one or the other"));
    }
  }
  return values;
}

absl::StatusOr<std::unique_ptr<SliceOp>> OperationRegistry::Create(const OpSpec& spec,
                                                                   ImageReader images) const {
  const OperationDef* def = Find(spec.name);
  if (def == nullptr) {
    std::vector<absl::string_view> names;
    for (const auto& [name, unused] : ops_) names.push_back(name);
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown operation '", spec.name, "' (operations: ", absl::StrJoin(names, ", "), ")"));
  }
  STACKPROC_ASSIGN_OR_RETURN(ParamValues values, Resolve(def->info, spec));
  values.images_ = std::move(images);
  return def->make(values);
}

absl::StatusOr<OpSpec> OperationRegistry::Complete(const OpSpec& spec) const {
  const OperationDef* def = Find(spec.name);
  if (def == nullptr) return Create(spec).status();  // its message
  STACKPROC_RETURN_IF_ERROR(Resolve(def->info, spec).status());
  OpSpec complete{spec.name, {}};
  for (const ParamSpec& p : def->info.params) {
    auto given = std::find_if(spec.params.begin(), spec.params.end(),
                              [&](const auto& param) { return param.first == p.name; });
    if (given != spec.params.end()) {
      complete.params.emplace_back(p.name, given->second);
    } else if (!p.only_when_given &&
               !(!p.unused_with.empty() &&
                 std::any_of(spec.params.begin(), spec.params.end(),
                             [&](const auto& param) { return param.first == p.unused_with; }))) {
      complete.params.emplace_back(p.name, p.default_value);
    }
  }
  return complete;
}

const OperationRegistry& OperationRegistry::Builtin() {
  static const OperationRegistry* const registry = [] {
    auto* r = new OperationRegistry;
    RegisterBuiltinOperations(*r);
    return r;
  }();
  return *registry;
}

}  // namespace stackproc::core

// Command-line arguments of the stackproc tools: "--flag value", "--flag=value" or "-f value"
// (repeatable), positional arguments, and for daemons an environment variable behind every
// flag. -h and --help are "help" anywhere, and take no value.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_writer.h"

namespace stackproc::core {

struct CliArgs {
  std::multimap<std::string, std::string> flags;
  std::vector<std::string> positional;
  std::string needs_value;  // the last flag, when no value followed it (CheckKnown says so)

  // Parses argv[first..argc). Flags named in `switches` take no value ("--wait").
  static absl::StatusOr<CliArgs> Parse(int argc, char** argv, int first,
                                       const std::vector<std::string>& switches = {}) {
    CliArgs args;
    for (int i = first; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        args.flags.emplace("help", "true");
        continue;
      }
      if (arg.size() == 2 && arg[0] == '-' && arg[1] != '-' && i + 1 < argc) {
        args.flags.emplace(arg.substr(1), argv[++i]);  // "-o value"
        continue;
      }
      if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
        args.positional.push_back(arg);
        continue;
      }
      if (size_t eq = arg.find('='); eq != std::string::npos) {
        args.flags.emplace(arg.substr(2, eq - 2), arg.substr(eq + 1));
      } else if (std::find(switches.begin(), switches.end(), arg.substr(2)) != switches.end()) {
        args.flags.emplace(arg.substr(2), "true");
      } else if (i + 1 < argc) {
        args.flags.emplace(arg.substr(2), argv[++i]);
      } else {  // a flag that needs one, or a misspelt one: CheckKnown tells which
        args.flags.emplace(arg.substr(2), "");
        args.needs_value = arg;
      }
    }
    return args;
  }

  bool Has(const std::string& name) const { return flags.count(name) > 0; }

  // The flag's last value; else the environment variable `env` (when given); else `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "",
                  const char* env = nullptr) const {
    auto [begin, end] = flags.equal_range(name);
    if (begin != end) return std::prev(end)->second;
    if (env != nullptr) {
      if (const char* value = std::getenv(env); value != nullptr && *value != '\0') return value;
    }
    return fallback;
  }

  std::vector<std::string> All(const std::string& name) const {
    std::vector<std::string> values;
    for (auto [it, end] = flags.equal_range(name); it != end; ++it) values.push_back(it->second);
    return values;
  }
  // InvalidArgument naming the first flag given that is not one of `known` (a typo, or a flag
  // of another command, would otherwise be ignored without a word), and listing those of `what`;
  // then one naming a last flag that needed a value. ("help" is known to every command.)
  absl::Status CheckKnown(const std::vector<std::string>& known, const std::string& what) const {
    for (const auto& [name, value] : flags) {
      if (name == "help" || std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string list;
      for (const std::string& k : known) absl::StrAppend(&list, list.empty() ? "" : ", ", "--", k);
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag --", name, " for ", what,
          list.empty() ? " (it takes none)" : absl::StrCat(" (its flags: ", list, ")")));
    }
    if (!needs_value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(needs_value, " needs a value"));
    }
    return absl::OkStatus();
  }
};

// The flags ParseWriteFlags reads.
inline const std::vector<std::string>& WriteFlags() {
  static const std::vector<std::string> flags = {"compression", "chunks",  "zarr-shards",
                                                 "zarr-format", "pyramid", "overwrite"};
  return flags;
}

// `a` and then `b`, for lists of known flags.
inline std::vector<std::string> Joined(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The lines of `usage` that document `command`: the line that begins with it (after its
// indentation, or after `program` and a space), and the more deeply indented lines after it.
inline std::string CommandUsage(const std::string& usage, const std::string& program,
                                const std::string& command) {
  std::string out;
  size_t indent = std::string::npos;
  size_t line = 0;
  while (line < usage.size()) {
    const size_t end = std::min(usage.find('\n', line), usage.size());
    const std::string text = usage.substr(line, end - line);
    const size_t start = text.find_first_not_of(' ');
    if (indent != std::string::npos) {
      if (start == std::string::npos || start <= indent) break;
      out += text + "\n";
    } else if (start != std::string::npos) {
      std::string rest = text.substr(start);
      if (!program.empty() && rest.rfind(program + " ", 0) == 0)
        rest = rest.substr(program.size() + 1);
      if (rest == command || rest.rfind(command + " ", 0) == 0) {
        indent = start;
        out = "usage: " + (program.empty() ? "" : program + " ") + rest + "\n";
      }
    }
    line = end + 1;
  }
  return out;
}

// The flags of a command that writes an output: --compression (default: the format's),
// --chunks DxHxW, --zarr-shards DxHxW, --zarr-format 2|3 and --pyramid N (OME-Zarr), and
// --overwrite: the one rule of every command, an existing output is replaced only when asked.
inline absl::Status ParseWriteFlags(const CliArgs& args, WriteOptions& write) {
  write.overwrite = args.Has("overwrite");
  if (absl::Status s = ParseCompressionText(args.Get("compression", "default"), write); !s.ok()) {
    return s;
  }
  if (args.Has("chunks")) {
    auto chunks = ParseShape(args.Get("chunks"));
    if (!chunks.ok())
      return absl::InvalidArgumentError(absl::StrCat("--chunks ", chunks.status().message()));
    write.chunks = {chunks->depth, chunks->height, chunks->width};
  }
  if (args.Has("zarr-shards")) {
    auto shards = ParseShape(args.Get("zarr-shards"));
    if (!shards.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--zarr-shards ", shards.status().message()));
    }
    write.zarr_shards = {shards->depth, shards->height, shards->width};
  }
  if (args.Has("zarr-format") && !absl::SimpleAtoi(args.Get("zarr-format"), &write.zarr_format)) {
    return absl::InvalidArgumentError("--zarr-format takes 2 (NGFF 0.4) or 3 (NGFF 0.5)");
  }
  if (args.Has("pyramid") && !absl::SimpleAtoi(args.Get("pyramid"), &write.pyramid_levels)) {
    return absl::InvalidArgumentError("--pyramid takes a number of levels (0-8)");
  }
  return absl::OkStatus();
}

// The PEM file (a certificate, key or CA) that `--flag` names: InvalidArgument naming the flag
// when it cannot be read or holds no PEM block.
inline absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " ", path, ": not a readable PEM file"));
  }
  return text;
}

}  // namespace stackproc::core

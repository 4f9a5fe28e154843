// stackproc-deflate-processes: does Deflate write the same bytes for the same strips in every
// process? Byte-equal outputs rest on it (a cluster's shards against a whole run, a taken-up
// stream against an unbroken one), and ISA-L's igzip at its levels 1 and 2 does not always:
// each process lies elsewhere in memory (ASLR), and now and then one encodes a strip otherwise.
//
// A generated 16-bit stack, blurred (gaussian sigma 1.5, as `stackproc-local run --op
// gaussian:sigma=1.5` makes it), is written once as raw strips of 256 rows; then, for igzip at
// each of its levels and for stackproc's own encoder (EncodeDeflate at its default level),
// --processes new processes each deflate every strip and report a hash of what they wrote and
// their speed. Printed: how many processes wrote other bytes than the most common, the median
// MB/s of one thread and the ratio.
//
//   stackproc-deflate-processes [--processes 100] [--depth 96] [--dir /dev/shm]
#include <isa-l/igzip_lib.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/tiff/strip_encoder.h"
#include "core/tools/synthetic.h"

namespace stackproc::core {
namespace {

constexpr int kWidth = 1024, kHeight = 1024, kRowsPerStrip = 256;
constexpr size_t kStripBytes = size_t{kRowsPerStrip} * kWidth * sizeof(uint16_t);

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "stackproc-deflate-processes: %s\n", message.c_str());
  std::exit(1);
}

void WriteStrips(const std::string& path, int depth) {
  auto source = SyntheticSource::Create({depth, kHeight, kWidth}, PixelType::kUint16);
  if (!source.ok()) Die(source.status().ToString());
  std::ofstream file(path, std::ios::binary);
  cv::Mat slice(kHeight, kWidth, CV_16UC1), blurred;
  for (int z = 0; z < depth; ++z) {
    if (auto status = (*source)->Read(z, slice.data); !status.ok()) Die(status.ToString());
    cv::GaussianBlur(slice, blurred, cv::Size(), 1.5);
    file.write(reinterpret_cast<const char*>(blurred.data),
               static_cast<std::streamsize>(blurred.total() * blurred.elemSize()));
  }
  if (!file.flush()) Die("cannot write " + path);
}

// igzip at `level` (1-3), as stackproc called it before it kept to level 3.
void IgzipAt(int level, const uint8_t* data, size_t bytes, std::vector<uint8_t>& out) {
  static constexpr size_t kLevelBuffer[] = {0, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT,
                                            ISAL_DEF_LVL3_DEFAULT};
  thread_local std::vector<uint8_t> level_buffer;
  level_buffer.resize(kLevelBuffer[level]);
  out.resize(bytes + (bytes / 65535 + 1) * 5 + 64);
  isal_zstream stream;
  isal_deflate_stateless_init(&stream);
  stream.hist_bits = 0;
  stream.level = static_cast<uint32_t>(level);
  stream.level_buf = level_buffer.data();
  stream.level_buf_size = static_cast<uint32_t>(level_buffer.size());
  stream.gzip_flag = IGZIP_ZLIB;
  stream.end_of_stream = 1;
  stream.next_in = const_cast<uint8_t*>(data);
  stream.avail_in = static_cast<uint32_t>(bytes);
  stream.next_out = out.data();
  stream.avail_out = static_cast<uint32_t>(out.size());
  if (isal_deflate_stateless(&stream) != COMP_OK) Die("igzip failed");
  out.resize(stream.total_out);
}

// One process's work: every strip of `path` deflated by `mode` ("1"-"3": igzip at that level;
// "stackproc": EncodeDeflate at level 1). Prints "HASH MB/s RATIO".
int Child(const std::string& mode, const std::string& path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  std::vector<uint8_t> stack(static_cast<size_t>(file.tellg()));
  file.seekg(0);
  if (!file.read(reinterpret_cast<char*>(stack.data()),
                 static_cast<std::streamsize>(stack.size()))) {
    Die("cannot read " + path);
  }
  uint64_t hash = 14695981039346656037u;  // FNV-1a over every strip's bytes
  size_t written = 0;
  std::vector<uint8_t> out;
  absl::Duration encoding;  // the encoder's time alone
  for (size_t at = 0; at + kStripBytes <= stack.size(); at += kStripBytes) {
    const absl::Time start = absl::Now();
    if (mode == "stackproc") {
      if (!EncodeDeflate(1, false, stack.data() + at, kStripBytes, out).ok()) Die("deflate");
    } else {
      IgzipAt(mode[0] - '0', stack.data() + at, kStripBytes, out);
    }
    encoding += absl::Now() - start;
    for (uint8_t byte : out) hash = (hash ^ byte) * 1099511628211u;
    written += out.size();
  }
  const double seconds = absl::ToDoubleSeconds(encoding);
  std::printf("%016llx %.1f %.4f\n", static_cast<unsigned long long>(hash),
              static_cast<double>(stack.size()) / 1e6 / seconds,
              static_cast<double>(stack.size()) / static_cast<double>(written));
  return 0;
}

std::string RunChild(const std::string& mode, const std::string& path) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) Die("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::string self = "/proc/self/exe", child = "--child";
  std::vector<char*> argv{self.data(), child.data(), const_cast<char*>(mode.c_str()),
                          const_cast<char*>(path.c_str()), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
    Die("cannot start a process");
  }
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  std::string line;
  char buffer[256];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) line.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("a process failed");
  return line;
}

int Main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--child") return Child(argv[2], argv[3]);
  int processes = 100, depth = 96;
  std::string dir = "/dev/shm";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--processes" && absl::SimpleAtoi(argv[i + 1], &processes)) continue;
    if (flag == "--depth" && absl::SimpleAtoi(argv[i + 1], &depth)) continue;
    if (flag == "--dir") {
      dir = argv[i + 1];
      continue;
    }
    Die("usage: stackproc-deflate-processes [--processes N] [--depth N] [--dir DIR]");
  }
  const std::string path = absl::StrCat(dir, "/deflate-processes-", getpid(), ".raw");
  WriteStrips(path, depth);
  std::printf("%d x %d x %d uint16, blurred, %d-row strips; %d processes each\n", depth, kHeight,
              kWidth, kRowsPerStrip, processes);
  std::printf("%-22s %28s %12s %7s\n", "encoder", "processes with other bytes", "MB/s", "ratio");
  for (const std::string mode : {"1", "2", "3", "stackproc"}) {
    std::map<std::string, int> hashes;
    std::vector<double> speeds;
    double ratio = 0;
    for (int p = 0; p < processes; ++p) {
      char hash[64];
      double speed = 0;
      if (std::sscanf(RunChild(mode, path).c_str(), "%63s %lf %lf", hash, &speed, &ratio) != 3) {
        Die("a process said nothing");
      }
      ++hashes[hash];
      speeds.push_back(speed);
    }
    int most = 0;
    for (const auto& [hash, count] : hashes) most = std::max(most, count);
    std::nth_element(speeds.begin(), speeds.begin() + speeds.size() / 2, speeds.end());
    const std::string name =
        mode == "stackproc" ? "EncodeDeflate (level 1)" : absl::StrCat("igzip level ", mode);
    std::printf(
        "%-22s %28s %12.0f %7.3f\n", name.c_str(),
        absl::StrCat(processes - most, " of ", processes, " (", hashes.size(), " outputs)").c_str(),
        speeds[speeds.size() / 2], ratio);
    std::fflush(stdout);
  }
  std::remove(path.c_str());
  return 0;
}

}  // namespace
}  // namespace stackproc::core

int main(int argc, char** argv) { return stackproc::core::Main(argc, argv); }

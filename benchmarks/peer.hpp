#pragma once
// What the benchmarks that time a step next to a Python peer share: the
// median of the timed repetitions, and running the peer command, which prints
// one JSON line {"median_s": ..., "torch": ..., "transformers": ...}.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace plm::bench_peer {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs the peer and returns what it printed, or "" (after a message naming
// `program`) when it fails or prints no median_s.
inline std::string peer_output(const std::string& cmd, const char* program) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    std::fprintf(stderr, "%s: cannot start the peer: %s\n", program, cmd.c_str());
    return {};
  }
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  if (rc != 0 || out.find("\"median_s\":") == std::string::npos) {
    std::fprintf(stderr, "%s: peer command failed (rc %d): %s\n%s\n", program, rc, cmd.c_str(), out.c_str());
    return {};
  }
  return out;
}

// Runs the peer and returns its median_s (printing its torch and transformers
// versions), or -1 when it fails; `program` names the benchmark in the message.
inline double run_peer(const std::string& cmd, const char* program) {
  const std::string out = peer_output(cmd, program);
  if (out.empty()) return -1;
  const auto k = out.find("\"median_s\":");
  const auto field = [&](const char* key) {
    const std::string k2 = std::string("\"") + key + "\": \"";
    const auto a = out.find(k2);
    if (a == std::string::npos) return std::string("?");
    const auto b = out.find('"', a + k2.size());
    return out.substr(a + k2.size(), b - a - k2.size());
  };
  std::printf("peer: torch %s, transformers %s\n", field("torch").c_str(), field("transformers").c_str());
  return std::atof(out.c_str() + k + 11);
}

}  // namespace plm::bench_peer

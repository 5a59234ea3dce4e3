// Hides a task's secret environment values in its output before the bytes
// leave the host. Output arrives in arbitrary chunks (a secret may be written
// one byte per write), so the redactor holds back the few trailing bytes that
// could still become part of a match and releases them once they cannot.
// Besides each secret itself it hides the forms a task is likely to print:
// base64 (standard and URL-safe, at any alignment inside a longer base64
// text), hex (lower and upper case) and RFC 3986 percent-encoding.
//
// Not hidden: base64 broken by line wraps (`base64` wraps at 76 columns, so
// secrets over 57 bytes), other escapings (JSON, shell quoting), and
// transformations such as reversing or splitting with other output. This is
// a guard against accidental disclosure, not against a hostile task.
#ifndef TASKGRID_SERVICES_COMMON_SECRET_REDACTOR_H_
#define TASKGRID_SERVICES_COMMON_SECRET_REDACTOR_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace taskgrid {

// Redacts one output stream (stdout and stderr each need their own). Every
// byte covered by an occurrence of any pattern is hidden, and each maximal run
// of hidden bytes becomes one `replacement`, so overlapping or adjacent
// secrets, and a secret that is a prefix of another, leave no fragment behind.
// The result does not depend on how the stream is chunked.
//
// Cost: building is O(total pattern bytes); Feed is O(chunk bytes) amortized
// (Aho-Corasick), and the held-back tail is at most (longest pattern - 1)
// bytes, so memory does not grow with the output.
//
// Not thread-safe; owned by the task's output path. Copies share the immutable
// patterns and carry their own stream state, so build one per task and copy
// it for the second stream.
class SecretRedactor {
 public:
  // Secrets shorter than this are ignored: hiding "a" or "on" would destroy
  // ordinary output and protect nothing a guess would not reveal.
  static constexpr size_t kMinSecretBytes = 4;

  // `secrets`: the values to hide, in any order, duplicates allowed.
  explicit SecretRedactor(const std::vector<std::string>& secrets,
                          std::string replacement = "[REDACTED]");

  // Appends to `out` the bytes of `chunk` (and earlier held-back bytes) that
  // are now final, with hidden runs replaced; holds back the rest.
  void Feed(absl::string_view chunk, std::string* out);
  std::string Feed(absl::string_view chunk);

  // End of stream: appends the held-back tail, redacted, to `out`. Afterwards
  // the redactor starts a new stream.
  void Flush(std::string* out);
  std::string Flush();

  // True when no secret qualified: output can bypass the redactor.
  bool empty() const { return matcher_ == nullptr; }
  // Bytes currently held back; at most max_pattern_size() - 1.
  size_t held() const { return pending_.size(); }
  // Every byte string that is hidden (sorted, unique), for tests and logs of
  // counts; never log the strings themselves.
  const std::vector<std::string>& patterns() const;
  size_t max_pattern_size() const;

 private:
  class Matcher;
  struct Interval {
    uint64_t begin;  // Absolute stream offsets, [begin, end).
    uint64_t end;
  };

  void Cover(uint64_t begin, uint64_t end);
  // Emits everything before `frontier` and every hidden byte after it that
  // directly follows; `chunk` holds the stream bytes from pending_end().
  void Drain(uint64_t frontier, absl::string_view chunk, std::string* out);
  void AppendRange(uint64_t from, uint64_t to, absl::string_view chunk, std::string* out) const;
  uint64_t pending_end() const { return base_ + pending_.size(); }

  std::shared_ptr<const Matcher> matcher_;  // Null when empty().
  std::string replacement_;

  // Stream state.
  int32_t state_ = 0;             // Automaton node after the last byte fed.
  uint64_t consumed_ = 0;         // Bytes fed since the stream began.
  uint64_t base_ = 0;             // Stream offset of pending_[0].
  std::string pending_;           // Fed but not yet emitted.
  std::deque<Interval> covered_;  // Hidden ranges not yet emitted; sorted, disjoint.
  bool in_run_ = false;           // The last emitted byte was hidden.
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_COMMON_SECRET_REDACTOR_H_

#include "services/common/secret_redactor.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace taskgrid {
namespace {

// Encoded forms shorter than this match ordinary text too often.
constexpr size_t kMinFormBytes = 4;

std::string UrlSafe(std::string b64) {
  for (char& c : b64) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return b64;
}

std::string PercentEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Adds the base64 text that encodes `secret` wherever it sits in a longer
// input. Each base64 char carries 6 bits, so with the secret starting `k`
// bytes into a 3-byte group, chars [ceil(8k/6), floor(8(k+n)/6)) depend on
// nothing but the secret; the chars around them mix in unknown neighbours and
// leak at most 4 secret bits each. When the secret ends the input, the final
// char (and '=' padding) is known too, so those longer forms are added as well.
void AddBase64Forms(absl::string_view secret, std::vector<std::string>* out) {
  for (size_t k = 0; k < 3; ++k) {
    std::string input(k, '\0');
    input.append(secret.data(), secret.size());
    const std::string padded = absl::Base64Escape(input);
    const size_t bits = 8 * input.size();
    const size_t begin = (8 * k + 5) / 6;
    for (size_t end : {bits / 6, (bits + 5) / 6, padded.size()}) {
      if (end < begin + kMinFormBytes) continue;
      std::string form = padded.substr(begin, end - begin);
      out->push_back(UrlSafe(form));
      out->push_back(std::move(form));
    }
  }
}

std::vector<std::string> PatternsFor(const std::vector<std::string>& secrets) {
  std::vector<std::string> out;
  for (const std::string& secret : secrets) {
    if (secret.size() < SecretRedactor::kMinSecretBytes) continue;
    out.push_back(secret);
    AddBase64Forms(secret, &out);
    std::string hex = absl::BytesToHexString(secret);
    out.push_back(absl::AsciiStrToUpper(hex));
    out.push_back(std::move(hex));
    out.push_back(PercentEncode(secret));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

// An Aho-Corasick automaton over the patterns. Edges are stored sorted in one
// flat array (not a 256-entry table per node): a 1 KiB secret yields ~13k
// nodes, and a dense table would cost 13 MiB per task.
class SecretRedactor::Matcher {
 public:
  explicit Matcher(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {
    // A trie with unsorted child lists first; flattened below.
    std::vector<std::vector<std::pair<unsigned char, int32_t>>> children(1);
    std::vector<bool> terminal(1, false);
    depth_.assign(1, 0);
    for (const std::string& p : patterns_) {
      max_len_ = std::max(max_len_, p.size());
      int32_t node = 0;
      for (unsigned char c : p) {
        auto& list = children[node];
        auto it =
            std::find_if(list.begin(), list.end(), [c](const auto& e) { return e.first == c; });
        if (it != list.end()) {
          node = it->second;
          continue;
        }
        const auto next = static_cast<int32_t>(children.size());
        list.emplace_back(c, next);
        children.emplace_back();
        terminal.push_back(false);
        depth_.push_back(depth_[node] + 1);
        node = next;
      }
      terminal[node] = true;
    }

    const size_t n = children.size();
    first_edge_.reserve(n + 1);
    for (auto& list : children) {
      std::sort(list.begin(), list.end());
      first_edge_.push_back(static_cast<int32_t>(labels_.size()));
      for (const auto& [c, next] : list) {
        labels_.push_back(c);
        targets_.push_back(next);
      }
    }
    first_edge_.push_back(static_cast<int32_t>(labels_.size()));
    root_next_.fill(0);
    for (const auto& [c, next] : children[0]) root_next_[c] = next;

    // Breadth-first, so every failure link points at a finished, shallower node.
    fail_.assign(n, 0);
    match_len_.assign(n, 0);
    std::vector<int32_t> queue = {0};
    for (size_t i = 0; i < queue.size(); ++i) {
      const int32_t u = queue[i];
      for (int32_t e = first_edge_[u]; e < first_edge_[u + 1]; ++e) {
        const int32_t v = targets_[e];
        fail_[v] = u == 0 ? 0 : Step(fail_[u], labels_[e]);
        match_len_[v] = terminal[v] ? depth_[v] : match_len_[fail_[v]];
        queue.push_back(v);
      }
    }
  }

  // The node for the longest suffix of (node's string + c) that starts a
  // pattern. Amortized O(1): each failure hop loses depth, each byte adds one.
  int32_t Step(int32_t node, unsigned char c) const {
    while (node != 0) {
      const auto begin = labels_.begin() + first_edge_[node];
      const auto end = labels_.begin() + first_edge_[node + 1];
      const auto it = std::lower_bound(begin, end, c);
      if (it != end && *it == c) return targets_[it - labels_.begin()];
      node = fail_[node];
    }
    return root_next_[c];
  }
  // Bytes of the stream that may still start a match.
  int32_t depth(int32_t node) const { return depth_[node]; }
  // Length of the longest pattern ending here, or 0.
  int32_t match_len(int32_t node) const { return match_len_[node]; }
  const std::vector<std::string>& patterns() const { return patterns_; }
  size_t max_len() const { return max_len_; }

 private:
  const std::vector<std::string> patterns_;
  size_t max_len_ = 0;
  std::vector<int32_t> first_edge_;  // Node i's edges: [first_edge_[i], first_edge_[i + 1]).
  std::vector<unsigned char> labels_;
  std::vector<int32_t> targets_;
  std::array<int32_t, 256> root_next_;  // Most output bytes are seen at the root.
  std::vector<int32_t> fail_;
  std::vector<int32_t> depth_;
  std::vector<int32_t> match_len_;
};

SecretRedactor::SecretRedactor(const std::vector<std::string>& secrets, std::string replacement)
    : replacement_(std::move(replacement)) {
  std::vector<std::string> patterns = PatternsFor(secrets);
  if (!patterns.empty()) matcher_ = std::make_shared<const Matcher>(std::move(patterns));
}

const std::vector<std::string>& SecretRedactor::patterns() const {
  static const auto* const kNone = new std::vector<std::string>();
  return matcher_ == nullptr ? *kNone : matcher_->patterns();
}

size_t SecretRedactor::max_pattern_size() const {
  return matcher_ == nullptr ? 0 : matcher_->max_len();
}

void SecretRedactor::Feed(absl::string_view chunk, std::string* out) {
  if (matcher_ == nullptr) {
    out->append(chunk.data(), chunk.size());
    return;
  }
  const Matcher& m = *matcher_;
  for (unsigned char c : chunk) {
    state_ = m.Step(state_, c);
    ++consumed_;
    // Only the longest match ending here matters: shorter ones lie inside it.
    if (const int32_t len = m.match_len(state_); len > 0) Cover(consumed_ - len, consumed_);
  }
  // A future match must extend the current automaton string, so it cannot
  // start before the frontier: earlier bytes are final.
  Drain(consumed_ - m.depth(state_), chunk, out);
}

std::string SecretRedactor::Feed(absl::string_view chunk) {
  std::string out;
  Feed(chunk, &out);
  return out;
}

void SecretRedactor::Flush(std::string* out) {
  if (matcher_ == nullptr) return;
  Drain(consumed_, {}, out);
  state_ = 0;
  consumed_ = 0;
  base_ = 0;
  in_run_ = false;
}

std::string SecretRedactor::Flush() {
  std::string out;
  Flush(&out);
  return out;
}

void SecretRedactor::Cover(uint64_t begin, uint64_t end) {
  // Matches arrive in order of their end, so only the back can overlap or
  // touch; merging keeps the deque short and makes adjacent secrets one run.
  while (!covered_.empty() && covered_.back().end >= begin) {
    begin = std::min(begin, covered_.back().begin);
    covered_.pop_back();
  }
  covered_.push_back({begin, end});
}

void SecretRedactor::Drain(uint64_t frontier, absl::string_view chunk, std::string* out) {
  const uint64_t chunk_base = pending_end();
  uint64_t cursor = base_;
  while (true) {
    // An interval may begin before the cursor: it then overlaps hidden bytes
    // already emitted (uncovered ones are emitted only below the frontier),
    // so in_run_ is already true.
    if (!covered_.empty() && covered_.front().begin <= cursor) {
      if (!in_run_) out->append(replacement_);
      in_run_ = true;
      cursor = std::max(cursor, covered_.front().end);
      covered_.pop_front();
      continue;
    }
    uint64_t stop = frontier;
    if (!covered_.empty()) stop = std::min(stop, covered_.front().begin);
    if (cursor >= stop) break;
    AppendRange(cursor, stop, chunk, out);
    in_run_ = false;
    cursor = stop;
  }
  // Keep the bytes from the cursor on.
  if (cursor < chunk_base) {
    pending_.erase(0, cursor - base_);
    pending_.append(chunk.data(), chunk.size());
  } else {
    const absl::string_view rest = chunk.substr(cursor - chunk_base);
    pending_.assign(rest.data(), rest.size());
  }
  base_ = cursor;
}

void SecretRedactor::AppendRange(uint64_t from, uint64_t to, absl::string_view chunk,
                                 std::string* out) const {
  const uint64_t chunk_base = pending_end();
  if (from < chunk_base) {
    const uint64_t n = std::min(to, chunk_base) - from;
    out->append(pending_, from - base_, n);
    from += n;
  }
  if (from < to) out->append(chunk.data() + (from - chunk_base), to - from);
}

}  // namespace taskgrid

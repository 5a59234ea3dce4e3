#include "services/common/secret_redactor.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace taskgrid {
namespace {

constexpr absl::string_view kR = "[REDACTED]";

// The specification, by brute force: hide every byte inside any occurrence of
// any pattern and replace each maximal hidden run once.
std::string Reference(const std::vector<std::string>& patterns, absl::string_view text,
                      absl::string_view replacement = kR) {
  std::vector<bool> hidden(text.size(), false);
  for (size_t i = 0; i < text.size(); ++i) {
    for (const std::string& p : patterns) {
      if (text.substr(i, p.size()) == p) {
        std::fill(hidden.begin() + i, hidden.begin() + i + p.size(), true);
      }
    }
  }
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!hidden[i]) {
      out.push_back(text[i]);
    } else if (i == 0 || !hidden[i - 1]) {
      out.append(replacement.data(), replacement.size());
    }
  }
  return out;
}

// Feeds `text` cut at the sorted offsets `cuts`, then flushes; checks the
// hold-back bound after every Feed.
std::string FeedCut(SecretRedactor& r, absl::string_view text, std::vector<size_t> cuts) {
  cuts.push_back(text.size());
  std::string out;
  size_t prev = 0;
  for (size_t cut : cuts) {
    out += r.Feed(text.substr(prev, cut - prev));
    EXPECT_LT(r.held(), std::max<size_t>(r.max_pattern_size(), 1));
    prev = cut;
  }
  out += r.Flush();
  EXPECT_EQ(r.held(), 0u);
  return out;
}

std::string OneShot(SecretRedactor& r, absl::string_view text) { return FeedCut(r, text, {}); }

TEST(SecretRedactorTest, IgnoresEmptyAndShortSecrets) {
  SecretRedactor r({"", "a", "abc"});
  EXPECT_TRUE(r.empty());
  EXPECT_TRUE(r.patterns().empty());
  EXPECT_EQ(r.Feed("abc a"), "abc a");
  EXPECT_EQ(r.held(), 0u);
  EXPECT_EQ(r.Flush(), "");
}

TEST(SecretRedactorTest, RedactsPlainSecretWithoutHoldingBackAfterIt) {
  SecretRedactor r({"hunter22"});
  EXPECT_FALSE(r.empty());
  EXPECT_EQ(r.Feed("pw=hunter22\n"), "pw=[REDACTED]\n");
  EXPECT_EQ(r.Flush(), "");
}

TEST(SecretRedactorTest, HoldsBackOnlyWhatCouldStartAMatch) {
  SecretRedactor r({"token123"});
  EXPECT_EQ(r.Feed("abc tok"), "abc ");
  EXPECT_EQ(r.held(), 3u);
  EXPECT_EQ(r.Feed("e"), "");
  EXPECT_EQ(r.Feed("x"), "tokex");
  EXPECT_EQ(r.held(), 0u);
}

TEST(SecretRedactorTest, SecretWrittenOneBytePerFeed) {
  const std::string secret = "s3cr3t-t0ken";
  SecretRedactor r({secret});
  const std::string text = "export TOKEN=" + secret + " done\n";
  std::string out;
  for (char c : text) {
    out += r.Feed(absl::string_view(&c, 1));
    EXPECT_LT(r.held(), r.max_pattern_size());
  }
  out += r.Flush();
  EXPECT_EQ(out, "export TOKEN=[REDACTED] done\n");
}

TEST(SecretRedactorTest, EverySplitOfTextWithTwoSecrets) {
  const std::string text = "a=alpha-key b=beta-key-2 end";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    SecretRedactor r({"alpha-key", "beta-key-2"});
    EXPECT_EQ(FeedCut(r, text, {cut}), "a=[REDACTED] b=[REDACTED] end") << "cut=" << cut;
  }
}

TEST(SecretRedactorTest, OverlappingAndAdjacentSecretsLeaveNoFragment) {
  SecretRedactor overlap({"abcdef", "defghi"});
  EXPECT_EQ(OneShot(overlap, "x abcdefghi y"), "x [REDACTED] y");
  SecretRedactor adjacent({"abcdef", "ghijkl"});
  EXPECT_EQ(OneShot(adjacent, "abcdefghijkl"), "[REDACTED]");
  EXPECT_EQ(OneShot(adjacent, "abcdef-ghijkl"), "[REDACTED]-[REDACTED]");
  SecretRedactor self_overlap({"abab"});
  EXPECT_EQ(OneShot(self_overlap, "abababa"), "[REDACTED]a");
}

TEST(SecretRedactorTest, SecretThatIsAPrefixOfAnotherLongestWins) {
  const std::vector<std::string> secrets = {"pass", "password1"};
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"password1!", "[REDACTED]!"}, {"passwor", "[REDACTED]wor"}, {"pas", "pas"}}) {
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      SecretRedactor r(secrets);
      EXPECT_EQ(FeedCut(r, text, {cut}), want) << text << " cut=" << cut;
    }
  }
}

TEST(SecretRedactorTest, RepeatedBytesStayLinear) {
  SecretRedactor r({"aaaa"});
  const std::string text = std::string(1 << 20, 'a') + "b";
  EXPECT_EQ(OneShot(r, text), "[REDACTED]b");
  // Almost-matches everywhere: each is held back and then released.
  SecretRedactor almost({std::string(64, 'a') + "b"});
  std::string near_text;
  for (int i = 0; i < 4096; ++i) near_text += std::string(63, 'a') + "c";
  EXPECT_EQ(FeedCut(almost, near_text, {1000, 70000, 200000}), near_text);
}

TEST(SecretRedactorTest, NonMatchingBinaryPassesThroughByteExact) {
  std::string binary;
  for (int round = 0; round < 4; ++round) {
    for (int b = 0; b < 256; ++b) binary.push_back(static_cast<char>(b));
  }
  SecretRedactor r({"not-present"});
  for (size_t cut = 0; cut <= binary.size(); cut += 7) {
    EXPECT_EQ(FeedCut(r, binary, {cut}), binary);
  }
  SecretRedactor none({});
  EXPECT_EQ(none.Feed(binary), binary);
}

TEST(SecretRedactorTest, RedactsSecretMadeOfBinaryBytes) {
  const std::string secret("\0\xff\x01\x80", 4);
  SecretRedactor r({secret});
  const std::string text = std::string("\0\0", 2) + secret + std::string("\0", 1);
  EXPECT_EQ(OneShot(r, text), std::string("\0\0[REDACTED]\0", 13));
}

TEST(SecretRedactorTest, RedactsBase64OfTheWholeSecret) {
  // Lengths 0, 1 and 2 mod 3 end in different padding.
  for (const std::string secret : {"s3cret", "s3cret7", "s3cret78"}) {
    SecretRedactor r({secret});
    // `echo -n SECRET | base64`
    EXPECT_EQ(OneShot(r, absl::Base64Escape(secret) + "\n"), "[REDACTED]\n") << secret;
    EXPECT_EQ(OneShot(r, "T=" + absl::WebSafeBase64Escape(secret)), "T=[REDACTED]") << secret;
  }
}

TEST(SecretRedactorTest, RedactsBase64OfSecretInsideLongerInputAtEveryAlignment) {
  const std::string secret = "correct horse battery";
  const size_t n = secret.size();
  for (const std::string prefix : {"", "p", "pr", "prefix", "prefix1", "prefix12"}) {
    for (const std::string suffix : {"", "tail", "t"}) {
      SCOPED_TRACE(prefix + "|" + suffix);
      SecretRedactor r({secret});
      const size_t k = prefix.size();
      // Chars [begin, end) carry secret bits only; the ones around mix in
      // neighbours (and may stay, as they leak at most 4 bits each).
      const size_t begin = (8 * k + 5) / 6;
      const size_t end = suffix.empty() ? std::string::npos : 8 * (k + n) / 6;
      for (const std::string& b64 : {absl::Base64Escape(prefix + secret + suffix),
                                     absl::WebSafeBase64Escape(prefix + secret + suffix)}) {
        const std::string want =
            b64.substr(0, begin) + std::string(kR) + (suffix.empty() ? "" : b64.substr(end));
        EXPECT_EQ(OneShot(r, b64), want) << b64;
      }
    }
  }
}

TEST(SecretRedactorTest, RedactsHexAndPercentEncoding) {
  const std::string secret = "p@ss w0rd!";
  SecretRedactor r({secret});
  EXPECT_EQ(OneShot(r, "x" + absl::BytesToHexString(secret) + "x"), "x[REDACTED]x");
  EXPECT_EQ(OneShot(r, "70407373207730726421"), "[REDACTED]");
  EXPECT_EQ(OneShot(r, "?pw=p%40ss%20w0rd%21&"), "?pw=[REDACTED]&");
  SecretRedactor upper({"\xab\xcd\xef\x01"});
  EXPECT_EQ(OneShot(upper, "ABCDEF01 abcdef01"), "[REDACTED] [REDACTED]");
}

TEST(SecretRedactorTest, CustomReplacement) {
  SecretRedactor r({"secret-1"}, "***");
  EXPECT_EQ(OneShot(r, "[secret-1]"), "[***]");
}

TEST(SecretRedactorTest, CopiesKeepTheirOwnStreamState) {
  SecretRedactor out({"secret-1"});
  SecretRedactor err = out;
  EXPECT_EQ(out.Feed("secr"), "");
  EXPECT_EQ(err.Feed("xx"), "xx");
  EXPECT_EQ(out.Feed("et-1"), "[REDACTED]");
  EXPECT_EQ(err.Flush(), "");
  EXPECT_EQ(out.Flush(), "");
}

TEST(SecretRedactorTest, FlushStartsANewStream) {
  SecretRedactor r({"secret-1"});
  EXPECT_EQ(r.Feed("secr"), "");
  EXPECT_EQ(r.Flush(), "secr");
  EXPECT_EQ(r.Feed("et-1"), "et-1");
  EXPECT_EQ(r.Flush(), "");
}

// Property: concat(Feed(...)..., Flush()) equals the brute-force redaction of
// the whole text, for every chunking.
class SecretRedactorChunkingTest : public ::testing::Test {
 protected:
  const std::vector<std::string> secrets_ = {"abab", "babba", "xyzw", std::string("ab\0z", 4),
                                             "abcabd"};
  SecretRedactor prototype_{secrets_};
};

TEST_F(SecretRedactorChunkingTest, AllTwoAndThreeWaySplits) {
  const std::vector<std::string> texts = {
      "abababbabbaxyzxyzw",
      "bab ab abab abba babba",
      std::string("\0ab\0zab\0abcabcabd\0", 18),
      "abcabcabdxyzwabab",
      "YWJhYg== " + absl::Base64Escape("..babba") + " " + absl::BytesToHexString("xyzw"),
  };
  for (const std::string& text : texts) {
    const std::string want = Reference(prototype_.patterns(), text);
    ASSERT_NE(want, text);  // Every text hides something.
    SecretRedactor one(prototype_);
    ASSERT_EQ(OneShot(one, text), want);
    for (size_t i = 0; i <= text.size(); ++i) {
      for (size_t j = i; j <= text.size(); ++j) {
        SecretRedactor r(prototype_);
        ASSERT_EQ(FeedCut(r, text, {i, j}), want) << text << " cuts=" << i << "," << j;
      }
    }
  }
}

TEST_F(SecretRedactorChunkingTest, RandomTextsAndChunkings) {
  std::mt19937 rng(20240607);
  const std::string alphabet("abxyzwcd\0 ", 10);
  SecretRedactor r(prototype_);  // Reused: Flush starts a new stream.
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text;
    const int len = std::uniform_int_distribution<int>(0, 120)(rng);
    while (static_cast<int>(text.size()) < len) {
      if (std::uniform_int_distribution<int>(0, 9)(rng) == 0) {
        text += secrets_[std::uniform_int_distribution<size_t>(0, secrets_.size() - 1)(rng)];
      } else {
        text.push_back(
            alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)]);
      }
    }
    std::vector<size_t> cuts;
    for (size_t at = 0; at < text.size();) {
      at += std::uniform_int_distribution<size_t>(0, 9)(rng);  // 0: an empty chunk.
      cuts.push_back(std::min(at, text.size()));
    }
    ASSERT_EQ(FeedCut(r, text, cuts), Reference(r.patterns(), text)) << "iter=" << iter;
  }
}

}  // namespace
}  // namespace taskgrid

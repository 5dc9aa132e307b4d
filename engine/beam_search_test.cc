#include "engine/beam_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

namespace memoria {
namespace {

// A toy model whose next-token log-probabilities depend on the whole prefix of each beam, given
// as a table prefix -> {token: probability} (missing tokens share the leftover mass). It keeps
// per-beam prefixes as its "cache", so a wrong Reorder shows up as wrong results.
class TableModel : public StepModel {
 public:
  TableModel(int vocab, int beams, std::map<std::vector<int>, std::map<int, double>> table)
      : vocab_(vocab), prefixes_(beams), table_(std::move(table)) {}
  int64_t vocab_size() const override { return vocab_; }
  Status Step(const std::vector<int>& tokens, float* logits) override {
    ++steps_;
    for (size_t b = 0; b < tokens.size(); ++b) {
      prefixes_[b].push_back(tokens[b]);
      std::vector<double> p(vocab_, 0.0);
      double rest = 1.0;
      auto it = table_.find(prefixes_[b]);
      if (it != table_.end()) {
        for (auto [t, q] : it->second) {
          p[t] = q;
          rest -= q;
        }
      }
      int free = 0;
      for (double q : p) free += q == 0.0;
      for (int t = 0; t < vocab_; ++t) {
        if (p[t] == 0.0) p[t] = rest / free;
        logits[b * vocab_ + t] = static_cast<float>(std::log(p[t]));
      }
    }
    return Status::Ok();
  }
  void Reorder(const std::vector<int>& parents) override {
    auto old = prefixes_;
    for (size_t i = 0; i < parents.size(); ++i) prefixes_[i] = old[parents[i]];
  }
  int steps() const { return steps_; }

 private:
  int vocab_;
  std::vector<std::vector<int>> prefixes_;
  std::map<std::vector<int>, std::map<int, double>> table_;
  int steps_ = 0;
};

constexpr int kEos = 1;

// Greedy takes 2 (0.5) then is stuck with flat 0.1-ish probabilities; the path through 3 (0.4)
// continues with 4 (0.9) then EOS (0.9): a better sequence that beam search must find.
std::map<std::vector<int>, std::map<int, double>> Table() {
  return {
      {{0}, {{2, 0.5}, {3, 0.4}}},
      {{0, 2}, {{5, 0.3}, {6, 0.3}}},
      {{0, 3}, {{4, 0.9}}},
      {{0, 3, 4}, {{kEos, 0.9}}},
  };
}

TEST(BeamSearchTest, FindsTheBetterSequenceGreedyMisses) {
  TableModel greedy_model(10, 1, Table());
  auto greedy = GreedySearch(0, kEos, 5, &greedy_model);
  ASSERT_TRUE(greedy.ok());
  EXPECT_EQ(greedy->tokens[0], 2);

  TableModel model(10, 3, Table());
  BeamSearchOptions o;
  o.num_beams = 3;
  o.max_new_tokens = 5;
  o.eos_token_id = kEos;
  auto r = BeamSearch(o, &model);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, (std::vector<int>{3, 4, kEos}));
  // Score = log(0.4 * 0.9 * 0.9) / len^1, len = [0, 3, 4] = 3 tokens (start included, EOS not).
  EXPECT_NEAR(r->score, std::log(0.4 * 0.9 * 0.9) / 3.0, 1e-6);
}

TEST(BeamSearchTest, OneBeamWithoutEosIsGreedy) {
  TableModel a(10, 1, Table()), b(10, 1, Table());
  auto greedy = GreedySearch(0, -1, 4, &a);
  BeamSearchOptions o;
  o.num_beams = 1;
  o.max_new_tokens = 4;
  o.eos_token_id = -1;
  auto beam = BeamSearch(o, &b);
  ASSERT_TRUE(greedy.ok() && beam.ok());
  EXPECT_EQ(greedy->tokens, beam->tokens);
  EXPECT_EQ(beam->tokens.size(), 4u);
}

TEST(BeamSearchTest, LengthPenaltyChangesTheWinner) {
  // Short: [7, EOS] with p = 0.5 * 0.5; long: [8, 9, 9, EOS] with p = 0.45 * 0.6 * 0.6 * 0.6.
  std::map<std::vector<int>, std::map<int, double>> t = {
      {{0}, {{7, 0.5}, {8, 0.45}}}, {{0, 7}, {{kEos, 0.5}}},       {{0, 8}, {{9, 0.6}}},
      {{0, 8, 9}, {{9, 0.6}}},      {{0, 8, 9, 9}, {{kEos, 0.6}}},
  };
  BeamSearchOptions o;
  o.num_beams = 2;
  // Ends right after the long answer's EOS: with a strong length penalty, longer running beams
  // closed at the limit would otherwise outscore it.
  o.max_new_tokens = 4;
  o.eos_token_id = kEos;
  o.length_penalty = 0.0f;  // raw log-probability: the short answer wins
  TableModel a(12, 2, t);
  auto short_win = BeamSearch(o, &a);
  ASSERT_TRUE(short_win.ok());
  EXPECT_EQ(short_win->tokens, (std::vector<int>{7, kEos}));
  o.length_penalty = 3.0f;  // strongly favour length
  TableModel b(12, 2, t);
  auto long_win = BeamSearch(o, &b);
  ASSERT_TRUE(long_win.ok());
  EXPECT_EQ(long_win->tokens, (std::vector<int>{8, 9, 9, kEos}));
}

TEST(BeamSearchTest, StopsAtMaxNewTokensAndRejectsBadOptions) {
  TableModel model(10, 2, {});
  BeamSearchOptions o;
  o.num_beams = 2;
  o.max_new_tokens = 3;
  o.eos_token_id = -1;
  auto r = BeamSearch(o, &model);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens.size(), 3u);
  EXPECT_EQ(model.steps(), 3);
  o.num_beams = 0;
  EXPECT_EQ(BeamSearch(o, &model).status().code(), StatusCode::kInvalidArgument);
  o.num_beams = 6;  // 2 * 6 candidates > vocabulary of 10
  EXPECT_EQ(BeamSearch(o, &model).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(GreedySearch(0, 1, 0, &model).status().code(), StatusCode::kInvalidArgument);
}

TEST(SearchStepHookTest, GreedyStreamsEveryTokenOfTheResultInOrder) {
  TableModel plain(10, 1, Table());
  auto expected = GreedySearch(0, kEos, 6, &plain);
  ASSERT_TRUE(expected.ok());
  TableModel model(10, 1, Table());
  std::vector<int> streamed, steps;
  SearchStepHook hook = [&](int step, const std::vector<int>& tokens) {
    EXPECT_EQ(tokens.size(), 1u);
    steps.push_back(step);
    streamed.push_back(tokens[0]);
    return Status::Ok();
  };
  auto r = GreedySearch(0, kEos, 6, &model, &hook);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, expected->tokens);
  EXPECT_DOUBLE_EQ(r->score, expected->score);
  EXPECT_EQ(streamed, r->tokens);
  EXPECT_EQ(steps, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(SearchStepHookTest, GreedyStopsAfterNStepsWithTheHooksStatus) {
  TableModel model(10, 1, Table());
  int calls = 0;
  SearchStepHook hook = [&](int step, const std::vector<int>&) {
    ++calls;
    return step == 2 ? DeadlineExceededError("deadline at step 2") : Status::Ok();
  };
  auto r = GreedySearch(0, kEos, 20, &model, &hook);
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r.status().message(), "deadline at step 2");
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(model.steps(), 3);  // no model step after the hook said stop
}

TEST(SearchStepHookTest, BeamChecksEveryStepAndStopsWithTheHooksStatus) {
  // Unstopped: one call per step, num_beams tokens each, and the same result as without a hook.
  TableModel plain(10, 3, Table());
  BeamSearchOptions o;
  o.num_beams = 3;
  o.max_new_tokens = 8;
  o.eos_token_id = -1;  // never closes early: 8 steps
  auto expected = BeamSearch(o, &plain);
  ASSERT_TRUE(expected.ok());
  TableModel model(10, 3, Table());
  std::vector<int> steps;
  SearchStepHook count = [&](int step, const std::vector<int>& tokens) {
    EXPECT_EQ(tokens.size(), 3u);
    steps.push_back(step);
    return Status::Ok();
  };
  auto r = BeamSearch(o, &model, &count);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, expected->tokens);
  EXPECT_EQ(steps, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));

  TableModel stopped(10, 3, Table());
  SearchStepHook cancel = [&](int step, const std::vector<int>&) {
    return step == 3 ? CancelledError("cancelled at step 3") : Status::Ok();
  };
  auto c = BeamSearch(o, &stopped, &cancel);
  EXPECT_EQ(c.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(c.status().message(), "cancelled at step 3");
  EXPECT_EQ(stopped.steps(), 4);
}


// ---- Constrained searches (engine/span_constraint.h) ----------------------------------------

// Log-probabilities that depend on the whole prefix through a seeded hash, so that every span has
// its own score. Per-beam prefixes as TableModel keeps them.
class HashModel : public StepModel {
 public:
  HashModel(int vocab, int beams, uint64_t seed) : vocab_(vocab), prefixes_(beams), seed_(seed) {}
  int64_t vocab_size() const override { return vocab_; }
  Status Step(const std::vector<int>& tokens, float* logits) override {
    for (size_t b = 0; b < tokens.size(); ++b) {
      prefixes_[b].push_back(tokens[b]);
      for (int t = 0; t < vocab_; ++t) logits[b * vocab_ + t] = Logit(prefixes_[b], t);
    }
    return Status::Ok();
  }
  void Reorder(const std::vector<int>& parents) override {
    auto old = prefixes_;
    for (size_t i = 0; i < parents.size(); ++i) prefixes_[i] = old[parents[i]];
  }
  // log P(t | prefix), prefix starting with the start token.
  double LogProb(const std::vector<int>& prefix, int t) const {
    std::vector<float> row(vocab_);
    for (int u = 0; u < vocab_; ++u) row[u] = Logit(prefix, u);
    double z = 0;
    for (float x : row) z += std::exp(static_cast<double>(x));
    return row[t] - std::log(z);
  }

 private:
  float Logit(const std::vector<int>& prefix, int t) const {
    uint64_t h = seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(t);
    for (int p : prefix) h = (h ^ static_cast<uint64_t>(p + 1)) * 0x100000001B3ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return static_cast<float>(h % 10007) / 10007.0f * 6.0f;  // logits in [0, 6)
  }
  int vocab_;
  std::vector<std::vector<int>> prefixes_;
  uint64_t seed_;
};

// Ids 10..19 begin words, 20..29 continue them, the others are punctuation (vocabulary 32).
std::vector<uint8_t> TestPieceKinds() {
  std::vector<uint8_t> kinds(32, kOtherPiece);
  for (int id = 10; id < 20; ++id) kinds[id] = kBeginsWord;
  for (int id = 20; id < 30; ++id) kinds[id] = kContinuesWord;
  return kinds;
}

TEST(ConstrainedSearchTest, BeamSearchWithEnoughBeamsFindsTheBestSpan) {
  // Spans: [10 20] [10 20 11] [11] (passage 0), [12 21] (passage 1). With 8 beams no
  // prefix is ever cut, and with length_penalty 0 the score is log P(span, EOS): the search must
  // return the exhaustive argmax, and its score.
  const std::vector<std::vector<int>> passages = {{10, 20, 11, kEos}, {12, 21}};
  const std::vector<std::vector<int>> spans = {{10, 20}, {10, 20, 11}, {11}, {12, 21}};
  PassageSpanConstraint constraint(passages, TestPieceKinds(), kEos);
  std::set<std::vector<int>> winners;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    HashModel reference(32, 1, seed);
    double best_score = -1e300;
    std::vector<int> best;
    for (const std::vector<int>& span : spans) {
      std::vector<int> prefix{0};
      double score = 0;
      for (int t : span) {
        score += reference.LogProb(prefix, t);
        prefix.push_back(t);
      }
      score += reference.LogProb(prefix, kEos);
      if (score > best_score) best_score = score, best = span;
    }
    best.push_back(kEos);
    HashModel model(32, 8, seed);
    BeamSearchOptions o;
    o.num_beams = 8;
    o.max_new_tokens = 6;
    o.eos_token_id = kEos;
    o.length_penalty = 0.0f;
    auto r = BeamSearch(o, &model, nullptr, &constraint);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, best) << "seed " << seed;
    EXPECT_NEAR(r->score, best_score, 1e-4) << "seed " << seed;
    winners.insert(r->tokens);
  }
  EXPECT_GE(winners.size(), 3u);  // the seeds really change the answer
}

TEST(ConstrainedSearchTest, GreedyTakesTheBestAllowedTokenAtEachStep) {
  // Unconstrained greedy takes 5 (0.6); constrained, 12 (0.2) beats 10 (0.1), then 21 (0.5) is
  // the only choice (EOS 0.3 would end mid-word), and after [12 21] the passage ends: EOS.
  std::map<std::vector<int>, std::map<int, double>> t = {
      {{0}, {{5, 0.6}, {12, 0.2}, {10, 0.1}}},
      {{0, 12}, {{21, 0.5}, {kEos, 0.3}}},
  };
  PassageSpanConstraint constraint({{10, 20}, {12, 21}}, TestPieceKinds(), kEos);
  TableModel free_model(32, 1, t);
  EXPECT_EQ(GreedySearch(0, kEos, 4, &free_model)->tokens[0], 5);
  TableModel model(32, 1, t);
  auto r = GreedySearch(0, kEos, 4, &model, nullptr, &constraint);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tokens, (std::vector<int>{12, 21, kEos}));
  // The model's own probabilities, not renormalised over the allowed ids; after [0 12 21] the
  // table has no entry: 1/32 each.
  EXPECT_NEAR(r->score, std::log(0.2) + std::log(0.5) + std::log(1.0 / 32), 1e-5);
}

TEST(ConstrainedSearchTest, FewerSpansThanBeamsLeaveDeadBeams) {
  // One one-word passage: after [13] only EOS is allowed; 4 beams have one candidate between
  // them. The search ends with the one hypothesis, whatever the model prefers.
  PassageSpanConstraint constraint({{13}}, TestPieceKinds(), kEos);
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    HashModel model(32, 4, seed);
    BeamSearchOptions o;
    o.num_beams = 4;
    o.max_new_tokens = 5;
    o.eos_token_id = kEos;
    auto r = BeamSearch(o, &model, nullptr, &constraint);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, (std::vector<int>{13, kEos}));
    EXPECT_TRUE(std::isfinite(r->score));
  }
}

TEST(ConstrainedSearchTest, RefusesAnotherEosAndAConstraintThatAllowsNothing) {
  PassageSpanConstraint other_eos({{10}}, TestPieceKinds(), /*eos_id=*/2);
  PassageSpanConstraint empty({}, TestPieceKinds(), kEos);
  BeamSearchOptions o;
  o.num_beams = 2;
  o.eos_token_id = kEos;
  for (const PassageSpanConstraint* c : {&other_eos, &empty}) {
    HashModel beam_model(32, 2, 1), greedy_model(32, 1, 1);
    auto beam = BeamSearch(o, &beam_model, nullptr, c);
    EXPECT_EQ(beam.status().code(), StatusCode::kInvalidArgument);
    auto greedy = GreedySearch(0, kEos, 4, &greedy_model, nullptr, c);
    EXPECT_EQ(greedy.status().code(), StatusCode::kInvalidArgument);
  }
  HashModel model(32, 1, 1);
  auto greedy = GreedySearch(0, kEos, 4, &model, nullptr, &other_eos);
  EXPECT_NE(greedy.status().message().find("with id 2, the search with 1"), std::string::npos)
      << greedy.status().message();
}

}  // namespace
}  // namespace memoria

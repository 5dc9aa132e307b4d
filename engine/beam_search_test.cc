#include "engine/beam_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

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

}  // namespace
}  // namespace memoria

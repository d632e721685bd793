// Token choice for sampling: greedy, top-k truncation, and the softmax draw itself.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "trainer/sample.h"

namespace sparta::test {
namespace {

using trainer::pick_token;

TEST(Sample, GreedyAndTopOneTakeTheArgmax) {
  const std::vector<float> z = {0.1f, 2.0f, -1.0f, 1.9f};
  for (double u : {0.01, 0.5, 0.99}) {
    EXPECT_EQ(pick_token(z.data(), 4, 0.0, 0, u), 1);
    EXPECT_EQ(pick_token(z.data(), 4, 1.0, 1, u), 1);
  }
}

TEST(Sample, TopKNeverPicksOutsideTheK) {
  const std::vector<float> z = {5.0f, 4.0f, -3.0f, 3.0f, -8.0f};
  for (int i = 0; i < 1000; ++i) {
    const int32_t t = pick_token(z.data(), 5, 5.0, 2, (i + 0.5) / 1000.0);
    EXPECT_TRUE(t == 0 || t == 1) << t;
  }
}

// A uniform grid of u reproduces the softmax probabilities at temperature T.
TEST(Sample, DrawFollowsTheTemperedSoftmax) {
  const std::vector<float> z = {1.0f, 0.0f, -1.0f};
  const double T = 0.7;
  std::vector<double> p(3);
  double sum = 0;
  for (int i = 0; i < 3; ++i) sum += p[static_cast<size_t>(i)] = std::exp(z[static_cast<size_t>(i)] / T);
  std::vector<int> count(3);
  const int n = 100000;
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(pick_token(z.data(), 3, T, 0, (i + 0.5) / n))];
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(count[static_cast<size_t>(i)] / static_cast<double>(n), p[static_cast<size_t>(i)] / sum, 1e-4);
}

}  // namespace
}  // namespace sparta::test

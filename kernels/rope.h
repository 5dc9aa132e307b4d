// Rotary position embeddings (RoPE), Hugging Face "rotate_half" layout.
//
// Inside each head of head_dim = 2h dimensions, dimension i (< h) pairs with i + h:
//   x'[i]     = x[i] cos(p w_i) - x[i+h] sin(p w_i)
//   x'[i + h] = x[i+h] cos(p w_i) + x[i] sin(p w_i),     w_i = theta^(-2i / head_dim)
// (Meta/llama2.c checkpoints pair 2i with 2i+1 instead; converters permute q/k rows into this
// layout once, so the engine has a single convention.)
#pragma once

#include <cstdint>
#include <vector>

namespace memoria {

// Precomputed cos/sin for positions [0, max_positions). Immutable after construction.
// Layout: cos_[p * half + i], sin_[p * half + i], half = head_dim / 2.
class RopeTable {
 public:
  RopeTable(int head_dim, int64_t max_positions, double theta);
  int head_dim() const { return head_dim_; }
  int64_t max_positions() const { return max_positions_; }
  const float* cos(int64_t pos) const { return cos_.data() + pos * (head_dim_ / 2); }
  const float* sin(int64_t pos) const { return sin_.data() + pos * (head_dim_ / 2); }

 private:
  int head_dim_;
  int64_t max_positions_;
  std::vector<float> cos_, sin_;
};

// Rotates x in place: x is [tokens, n_heads * head_dim] with row stride `stride`; token t is at
// position first_position + t (must be < table.max_positions()).
void ApplyRope(const RopeTable& table, float* x, int64_t tokens, int64_t stride, int n_heads,
               int64_t first_position);
// Reference computing the angles in double from theta directly.
void ApplyRopeReference(float* x, int64_t tokens, int64_t stride, int n_heads, int head_dim,
                        int64_t first_position, double theta);

}  // namespace memoria

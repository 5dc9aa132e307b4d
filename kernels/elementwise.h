// Norms, activations, softmax: row-wise and element-wise kernels over f32 arrays.
//
// Each has a *Reference plain-loop version (double accumulation where it matters) for tests.
// Row-wise kernels take rows x d with a row stride; in-place operation (y == x) is allowed.
#pragma once

#include <cstdint>

#include "kernels/thread_pool.h"

namespace memoria {

// RMSNorm (LLaMA and T5 "layer norm"; no mean subtraction, no bias):
//   y[r, i] = x[r, i] / sqrt(mean_i(x[r, :]^2) + eps) * weight[i]
// x, y: [rows, d] with row strides x_stride, y_stride (>= d). weight: [d].
void RmsNorm(const ThreadPool& pool, const float* x, int64_t x_stride, const float* weight,
             float* y, int64_t y_stride, int64_t rows, int64_t d, float eps);
void RmsNormReference(const float* x, int64_t x_stride, const float* weight, float* y,
                      int64_t y_stride, int64_t rows, int64_t d, float eps);

// Activations over n contiguous elements (in place allowed).
enum class Activation : uint8_t {
  kRelu,      // max(x, 0)
  kSilu,      // x * sigmoid(x)
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (HF "gelu_new")
  kGeluErf,   // 0.5 x (1 + erf(x / sqrt(2)))                      (HF "gelu")
};
void Activate(Activation act, const float* x, float* y, int64_t n);
void ActivateReference(Activation act, const float* x, float* y, int64_t n);

// Gated linear unit: out[i] = act(gate[i]) * up[i]  (SwiGLU with kSilu, gated-GELU with kGelu*).
void GatedActivate(Activation act, const float* gate, const float* up, float* out, int64_t n);
void GatedActivateReference(Activation act, const float* gate, const float* up, float* out,
                            int64_t n);

// Numerically stable softmax of each row in place: x[r, :cols] with row stride `stride`.
void SoftmaxRows(float* x, int64_t rows, int64_t cols, int64_t stride);
void SoftmaxRowsReference(float* x, int64_t rows, int64_t cols, int64_t stride);

// y[i] += x[i] (residual connections).
void AddInPlace(float* y, const float* x, int64_t n);

}  // namespace memoria

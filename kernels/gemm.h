// Matrix multiplication through oneDNN matmul, with cached primitives.
//
// All matrices are row-major. The weight operand B uses PyTorch's Linear layout [N, K] (out
// features x in features), so a linear layer is y = x W^T = MatmulTransB(x, W).
//
// Precision: f32 inputs accumulate in f32. A bf16 B (weights) is used as bf16 with f32
// accumulation when the CPU has avx512_bf16 (GetCpuFeatures()); otherwise the caller is expected
// to convert bf16 weights to f32 once at load (see WantBf16Weights()).
//
// Primitives are created once per (M, N, K, strides, dtype, accumulate) and cached (thread-safe,
// bounded). Calls run on `pool.num_threads()` OpenMP threads.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace memoria {

// True when bf16 weights should be kept in bf16 (the CPU computes bf16 dot products natively).
bool WantBf16Weights();

// C[M, N] = A[M, K] * B^T  (+ C[M, N] if accumulate)
//   A: f32, row stride lda >= K.  B: [N, K] of b_dtype (f32 or bf16), row stride ldb >= K.
//   C: f32, row stride ldc >= N. M, N, K >= 1.
void MatmulTransB(const ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t lda, const void* B, DType b_dtype, int64_t ldb, float* C, int64_t ldc,
                  bool accumulate = false);

// C[M, N] = A[M, K] * B[K, N]  (+ C if accumulate); all f32, row-major with the given strides.
void Matmul(const ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
            const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate = false);

// Plain-loop references (double accumulation) used by tests.
void MatmulTransBReference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const void* B, DType b_dtype, int64_t ldb, float* C, int64_t ldc,
                           bool accumulate = false);
void MatmulReference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                     int64_t ldb, float* C, int64_t ldc, bool accumulate = false);

}  // namespace memoria

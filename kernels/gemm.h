// Matrix multiplication through oneDNN matmul, with cached primitives.
//
// All matrices are row-major. The weight operand B uses PyTorch's Linear layout [N, K] (out
// features x in features), so a linear layer is y = x W^T = MatmulTransB(x, W).
//
// M = 1 (decode) runs a hand-written AVX2 GEMV split over the pool's threads instead of
// oneDNN: the product is bound by memory bandwidth, and the GEMV streams the weights at least as
// fast as oneDNN's M = 1 matmul with less per-call overhead (bench/results/gemm.md).
//
// Precision: f32 inputs accumulate in f32. A bf16 B (weights) is used as bf16 with f32
// accumulation; oneDNN then also rounds A to bf16. oneDNN implements bf16 matmul only on CPUs
// with AVX-512 (avx512_core); elsewhere a bf16 B goes through a slow blocked fallback that
// widens B to f32 block by block (exact: A is not rounded). So the loader should convert bf16
// weights to f32 once unless WantBf16Weights().
//
// Primitives are created once per (M, N, K, strides, dtype, accumulate) and cached (thread-safe,
// LRU, at most 512). Calls run on `pool.num_threads()` OpenMP threads and may be made
// concurrently from several threads, each with its own pool.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace memoria {

// True when bf16 weights should be kept in bf16: the CPU has avx512_bf16 and oneDNN implements a
// bf16 matmul on it. Decided once, then cached.
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

// MatmulTransB without the hand-written M = 1 GEMV: always through oneDNN (or, for bf16 B where
// oneDNN has no implementation, the blocked fallback). For benchmarks comparing the two paths.
void MatmulTransBOneDnn(const ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A,
                        int64_t lda, const void* B, DType b_dtype, int64_t ldb, float* C,
                        int64_t ldc, bool accumulate = false);

// Plain-loop references (double accumulation) used by tests.
void MatmulTransBReference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const void* B, DType b_dtype, int64_t ldb, float* C, int64_t ldc,
                           bool accumulate = false);
void MatmulReference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                     int64_t ldb, float* C, int64_t ldc, bool accumulate = false);

}  // namespace memoria

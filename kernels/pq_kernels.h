// Product quantization (PQ) kernels: code assignment as a GEMM, vectorised decode, and codebook
// training (k-means++-style initialisation, Lloyd or EMA updates, reset of rarely used codes).
//
// Notation follows FAISS's ProductQuantizer:
//   d     vector dimension, a multiple of M (callers zero-pad their vectors up to it)
//   M     number of subspaces (the MEMORY-VQ paper's g)
//   ksub  codes per subspace (the paper's C); 2 <= ksub <= 65536
//   dsub  d / M, the dimension of one subspace
//
// Memory layouts (all row-major, little endian):
//   centroids  /// Layout: (M, ksub, dsub) f32 -- centroid j of subspace m starts at
//                          centroids[(m * ksub + j) * dsub]
//   norms      /// Layout: (M, ksub) f32 -- squared L2 norm of each centroid
//   codes      /// Layout: (n, M) of PqCodeBytes(ksub) bytes each: uint8 when ksub <= 256,
//                          uint16 (little endian) when ksub <= 65536
//   vectors    /// Layout: (n, d) f32 with a row stride (in floats) >= d
//
// Code assignment is a GEMM: ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, so the nearest centroid of
// a subvector is the arg-min of ||c||^2 - 2 x.c over one row of X_m C_m^T. Two implementations:
//   - dsub <= 16 and ksub % 8 == 0 (MEMORY-VQ's shapes): a register-blocked AVX2 GEMM micro-kernel
//     with the arg-min fused into its epilogue. 4 rows x 8 centroids per step from the transposed
//     codebook (PqTables), so the (rows x ksub) product is never written to memory; with K = dsub
//     this small a library GEMM spends its time storing and re-reading that product.
//   - otherwise: oneDNN MatmulTransB per (row block, subspace), then a vectorised arg-min pass.
// Every kernel has a plain-loop reference (suffix Reference) that tests compare against; ties
// between equally near centroids may resolve differently (both are nearest).
//
// Threading: kernels take a ThreadPool and split rows (encode/decode) or subspaces (training)
// across its threads. Per-thread scratch is reused across calls (thread_local), so steady-state
// calls do not allocate. Not re-entrant on the same ThreadPool (see thread_pool.h).
//
// Errors: the kernels take already-validated shapes (storage/codec.cc validates stored data);
// shape violations abort via MEMORIA_CHECK. Code ids >= ksub read by the decoders are an
// invariant violation too: callers validate codes that came from disk (PqCodesValid).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/thread_pool.h"

namespace memoria {

// The shape of a product quantizer. d = M * dsub.
struct PqShape {
  int64_t d = 0;
  int64_t M = 0;
  int64_t ksub = 0;
  int64_t dsub() const { return M > 0 ? d / M : 0; }
  // True when d > 0, M > 0, d % M == 0 and 2 <= ksub <= 65536.
  bool valid() const;
};

// Bytes per stored code id: 1 when ksub <= 256, else 2.
inline int PqCodeBytes(int64_t ksub) { return ksub <= 256 ? 1 : 2; }

// norms[m * ksub + j] = ||centroid(m, j)||^2. norms: (M, ksub).
void PqCentroidNorms(const PqShape& shape, const float* centroids, float* norms);

// Tables derived from the centroids once, reused by every PqAssign/PqEncode call.
struct PqTables {
  std::vector<float> norms;       /// Layout: (M, ksub)
  std::vector<float> transposed;  /// Layout: (M, dsub, ksub) -- only for the fused kernel
};
void PqPrepareTables(const PqShape& shape, const float* centroids, PqTables* tables);

// Nearest centroid of every subvector.
//   x: (n, d) with row stride ldx. tables: from PqPrepareTables for these centroids.
//   assign: (n, M) int32 centroid ids. dist: (n, M) squared distances, or nullptr.
// Runs on pool's threads (row blocks in parallel; each GEMM single-threaded).
void PqAssign(const ThreadPool& pool, const PqShape& shape, const float* centroids,
              const PqTables& tables, int64_t n, const float* x, int64_t ldx, int32_t* assign,
              float* dist);
void PqAssignReference(const PqShape& shape, const float* centroids, int64_t n, const float* x,
                       int64_t ldx, int32_t* assign, float* dist);

// Encodes n vectors to codes (n, M) of PqCodeBytes(ksub) bytes each (see the header comment).
void PqEncode(const ThreadPool& pool, const PqShape& shape, const float* centroids,
              const PqTables& tables, int64_t n, const float* x, int64_t ldx, uint8_t* codes);
void PqEncodeReference(const PqShape& shape, const float* centroids, int64_t n, const float* x,
                       int64_t ldx, uint8_t* codes);

// Decodes n code rows into out (n, d_out) with row stride ldo >= d_out, d_out <= d: the first
// d_out components of each reconstruction (drops the zero padding of d). Code ids must be < ksub.
void PqDecode(const ThreadPool& pool, const PqShape& shape, const float* centroids, int64_t n,
              const uint8_t* codes, int64_t d_out, float* out, int64_t ldo);
void PqDecodeReference(const PqShape& shape, const float* centroids, int64_t n,
                       const uint8_t* codes, int64_t d_out, float* out, int64_t ldo);

// True when every code id in codes (n, M) is < ksub. Only ksub that is not a power of two
// (uint8 codes with ksub < 256, uint16 with ksub < 65536) can hold out-of-range ids.
bool PqCodesValid(const PqShape& shape, int64_t n, const uint8_t* codes);

enum class PqUpdate {
  // Full-batch k-means: each centroid moves to the mean of the vectors assigned to it.
  kLloyd,
  // Exponential moving averages over mini-batches (VQ-VAE appendix A, MEMORY-VQ):
  //   N_j <- decay * N_j + (1 - decay) * n_j,  s_j <- decay * s_j + (1 - decay) * sum_j,
  //   c_j = s_j / N_j, where n_j / sum_j are the count / sum of the batch's vectors at code j.
  kEma,
};

struct PqTrainOptions {
  // Passes (kLloyd) or mini-batch steps (kEma). Default 20.
  int iterations = 20;
  PqUpdate update = PqUpdate::kLloyd;
  // kEma only: decay of the moving averages (the paper uses 0.999 over many steps; with tens of
  // steps 0.9 converges) and vectors per mini-batch (0 = all).
  float ema_decay = 0.9f;
  int64_t ema_batch = 0;
  // Training vectors used at most per centroid (a random subset beyond that, like FAISS's
  // max_points_per_centroid); 0 = use all. Default 256.
  int64_t max_points_per_centroid = 256;
  // After each update, a code whose assigned count is below reset_fraction * (n / ksub) is
  // re-initialised by D^2 sampling (the k-means++ rule) from the vectors of its subspace.
  // 0 disables resets. Default 0.03.
  double reset_fraction = 0.03;
  // k-means++-style initialisation picks centres by D^2 sampling in init_rounds batches of
  // ksub / init_rounds centres (exact k-means++ when init_rounds == ksub). Default 32.
  int init_rounds = 32;
  uint64_t seed = 1234;
  // Called with (iteration, distortion, codes reset) after initialisation (iteration 0) and after
  // each iteration 1..iterations; distortion as in PqTrainReport. May be empty.
  std::function<void(int, double, int64_t)> on_iteration;
};

struct PqTrainReport {
  // Mean squared reconstruction error per vector (sum over all d components) after
  // initialisation (index 0) and after each iteration (index i), measured on the vectors the next
  // step assigns: all training vectors for kLloyd and for the final entry, the next mini-batch
  // for intermediate kEma entries.
  std::vector<double> distortion;
  std::vector<int64_t> resets;  // codes reset in each iteration
  int64_t training_vectors = 0;  // after sampling
};

// Trains centroids (M, ksub, dsub) from n vectors x (n, d) with row stride ldx.
// Requires n >= ksub (MEMORIA_CHECK); callers report the shortage as an error first.
void PqTrain(const ThreadPool& pool, const PqShape& shape, int64_t n, const float* x, int64_t ldx,
             const PqTrainOptions& options, float* centroids, PqTrainReport* report);

}  // namespace memoria

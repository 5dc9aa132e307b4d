// Binary token representation (BTR) kernels: 1-bit sign packing with calibration, calibrated
// decode, and Hamming distances by popcount.
//
// Calibrated binarisation (BTR, Cao et al. 2024, keeps each token's scale and per-dimension
// statistics so decode restores the representation's scale). With per-dimension statistics from
// calibration tokens,
//     mu_j = mean_k x_kj                (centre)
//     a_j  = mean_k |x_kj - mu_j|       (spread; plays the role of BTR's layer-norm weight)
// a token x (d floats) is stored as
//     b_j   = 1 if x_j > mu_j else 0                                   (1 bit per dimension)
//     alpha = sum_j a_j |x_j - mu_j| / sum_j a_j^2                     (one scale per token)
// and decoded as
//     x^_j  = mu_j + alpha * a_j * (2 b_j - 1).
// alpha is the least-squares optimal scale of the pattern a * (2b - 1) for x - mu, so the decoded
// token has the right scale (its variance around mu) and the sign pattern of the original.
//
// Layouts (row-major, little endian):
//   bits    /// Layout: (n, d / 8) bytes; dimension j of a token is bit (j % 8) of byte j / 8
//                       (least significant bit first). d must be a multiple of 8: callers pad
//                       with dimensions whose mu = a = 0 (always decoded as 0).
//   scales  /// Layout: (n) f32, the alpha of each token
//   mu, a   /// Layout: (d) f32
//   vectors /// Layout: (n, d) f32 with a row stride >= d
// Hamming distances compare bits rows; padding bits are 0 in every row, so they never count.
//
// Threading: encode/decode split rows across the pool's threads. No allocation per call.
#pragma once

#include <cstdint>

#include "kernels/thread_pool.h"

namespace memoria {

// Per-dimension statistics mu, a (see above) from n calibration vectors x (n, d), stride ldx.
// d may be any size here. n >= 1.
void BtrCalibrate(int64_t n, int64_t d, const float* x, int64_t ldx, float* mu, float* a);

// Packs n vectors into bits (n, d / 8) and scales (n). d % 8 == 0. A token whose sum_j a_j^2 is
// zero (all dimensions constant) gets alpha = 0.
void BtrEncode(const ThreadPool& pool, int64_t n, int64_t d, const float* x, int64_t ldx,
               const float* mu, const float* a, uint8_t* bits, float* scales);
void BtrEncodeReference(int64_t n, int64_t d, const float* x, int64_t ldx, const float* mu,
                        const float* a, uint8_t* bits, float* scales);

// Decodes n tokens to out (n, d_out), d_out <= d, row stride ldo >= d_out (drops padding).
void BtrDecode(const ThreadPool& pool, int64_t n, int64_t d, const uint8_t* bits,
               const float* scales, const float* mu, const float* a, int64_t d_out, float* out,
               int64_t ldo);
void BtrDecodeReference(int64_t n, int64_t d, const uint8_t* bits, const float* scales,
                        const float* mu, const float* a, int64_t d_out, float* out, int64_t ldo);

// Number of differing bits between two packed rows of nbytes bytes (popcount of XOR, 8 bytes at
// a time).
int64_t BtrHamming(const uint8_t* x, const uint8_t* y, int64_t nbytes);
int64_t BtrHammingReference(const uint8_t* x, const uint8_t* y, int64_t nbytes);

// All pairwise distances between rows of X (nx, nbytes) and Y (ny, nbytes): out (nx, ny) int32.
void BtrHammingMatrix(const ThreadPool& pool, int64_t nx, const uint8_t* x, int64_t ny,
                      const uint8_t* y, int64_t nbytes, int32_t* out);

}  // namespace memoria

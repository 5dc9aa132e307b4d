// BTR offline token merging: fewer stored tokens per passage by merging near-duplicate tokens
// (BTR, Cao et al. 2024, offline compression; docs/mission.md section 3), with the merge map kept
// so the passage's original token positions can be restored.
//
// Algorithm (bipartite soft matching by Hamming distance, as BTR/ToMe):
//   1. Split the passage's n tokens into A = even positions and B = odd positions.
//   2. Each a in A finds its nearest b in B by Hamming distance of the sign bits (popcount; ties:
//      the lowest b). Why bipartite: one pass of n/2 x n/2 distances, and no chains of merges.
//   3. The k = min(floor(ratio * n), |A|) pairs with the smallest distances (ties: lower a) merge:
//      each chosen a joins its b's group; a b may absorb several a's.
//   4. A group G becomes one token in the codec's own decode space: with s_i = 2 b_i - 1 and
//      calibration spread a (kernels/btr_kernels.h: x^ = mu + alpha * a * s), the group mean is
//      mu + a * m with m_j = mean_{i in G} alpha_i s_ij. The merged token takes
//          s_j     = sign(m_j)           (m_j == 0: the bit of G's B token)
//          alpha   = sum_j a_j^2 s_j m_j / sum_j a_j^2     (least-squares scale of that pattern)
//      i.e. the best 1-bit token for the group's mean under the same decoder.
//   Kept tokens stay in their original order (a group sits at its B token's position).
// The stopword collapse of the paper (all stopword tokens -> one mean vector) needs the
// tokenizer's stopword ids and is not done here.
//
// Merged passage blob (what a store keeps for a merged passage; the store adds framing + CRC).
// The map is stored as the matching itself, not as n row numbers: which A tokens merged (one bit
// each) and the B partner of each (u16), so it costs ceil(n/2 / 8) + 2 k bytes for k merged
// tokens instead of 4 n (at d = 128, where a token takes 18 bytes, a u32 per token would eat
// the whole saving of merging 20%):
//   /// Layout: u32 n | u32 m | ceil(ceil(n/2) / 8) bytes: bit i set = A token i (position 2i)
//   ///         merged | k = n - m x u16 b (its B token, position 2b + 1, in order of i) |
//   ///         btr codes of m tokens
//   (little endian; codes as storage/codec.h: bits (m, d8/8) then scales (m) bf16 or f32). Rows:
//   the kept tokens (every B and each unmerged A) in token order; a merged A reads its B's row.
//
// Errors: INVALID_ARGUMENT for a non-BTR or unready codec, ratio outside [0, 1), code bytes that
// do not match n tokens, n > kMaxBtrMergeTokens, or (EncodeBtrMergedPassage) a map that is not such
// a matching; DATA_LOSS for a blob that is truncated, has trailing bytes, m > n, m == 0 with
// n > 0, n > kMaxBtrMergeTokens, a flag past the A tokens, n - m != the flags set, or a partner
// outside the B tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/codec.h"

namespace memoria {

// Longest passage token merging takes: the matching holds an (n/2 x n/2) int32 distance matrix
// (64 MiB here), and partners are u16.
inline constexpr int64_t kMaxBtrMergeTokens = 8192;

struct BtrMergedPassage {
  int64_t num_tokens = 0;          // n, before merging
  int64_t merged_tokens = 0;       // m
  std::vector<uint32_t> merge_map; // n entries, each < m
  std::string codes;               // codec.code_size(m) bytes
};

// Merges the BTR codes of one passage (n tokens, code_bytes == codec.code_size(n)).
// ratio: fraction of the n tokens removed (BTR uses 0.2); 0 keeps every token.
StatusOr<BtrMergedPassage> BtrMergeTokens(const Codec& codec, int64_t n, const uint8_t* codes,
                                          int64_t code_bytes, double ratio);

// Scatters decoded merged rows back to token positions: out[t] = merged[map[t]].
// merged: (m, d) f32; out: (n, d) f32, both row-major. INVALID_ARGUMENT for a map entry >= m.
Status BtrUnmerge(const std::vector<uint32_t>& merge_map, int64_t m, int64_t d,
                  const float* merged, float* out);

// The blob layout above, and its checked inverse (codec gives the expected code size).
StatusOr<std::string> EncodeBtrMergedPassage(const BtrMergedPassage& p);
StatusOr<BtrMergedPassage> DecodeBtrMergedPassage(const Codec& codec, const std::string& blob);

}  // namespace memoria

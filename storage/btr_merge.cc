#include "storage/btr_merge.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/btr_kernels.h"
#include "kernels/dtype.h"

namespace memoria {
namespace {

void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

}  // namespace

StatusOr<BtrMergedPassage> BtrMergeTokens(const Codec& codec, int64_t n, const uint8_t* codes,
                                          int64_t code_bytes, double ratio) {
  const CodecSpec& spec = codec.spec();
  if (spec.id != CodecId::kBtr) return InvalidArgumentError("token merging needs a btr codec, got " + spec.ToString());
  if (!codec.ready()) return InvalidArgumentError("token merging needs a calibrated btr codec");
  if (!(ratio >= 0.0 && ratio < 1.0)) {
    return InvalidArgumentError("merge ratio must be in [0, 1), got " + std::to_string(ratio));
  }
  if (n > kMaxBtrMergeTokens) {
    return InvalidArgumentError("token merging takes passages of at most " + std::to_string(kMaxBtrMergeTokens) +
                                " tokens, got " + std::to_string(n));
  }
  if (n < 0 || code_bytes != codec.code_size(n)) {
    return InvalidArgumentError("btr codes of " + std::to_string(n) + " tokens take " +
                                std::to_string(codec.code_size(n)) + " bytes, got " + std::to_string(code_bytes));
  }
  const int64_t d8 = 8 * ((spec.dim + 7) / 8), row = d8 / 8, sb = spec.btr_scale_bytes;
  // Calibration state: mu (d8) f32 then a (d8) f32; only a matters for merging.
  const std::string state = codec.SerializeState();
  if (int64_t(state.size()) != 2 * d8 * 4) return InvalidArgumentError("unexpected btr state size");
  std::vector<float> a(d8);
  std::memcpy(a.data(), state.data() + d8 * 4, size_t(d8) * 4);
  double a2 = 0.0;
  for (float v : a) a2 += double(v) * v;

  const uint8_t* bits = codes;
  const uint8_t* scales = codes + n * row;
  auto alpha = [&](int64_t t) -> float {
    if (sb == 2) return Bf16ToF32(uint16_t(scales[2 * t] | (uint16_t(scales[2 * t + 1]) << 8)));
    float f;
    std::memcpy(&f, scales + 4 * t, 4);
    return f;
  };

  // 1-3: bipartite matching of even (A) to odd (B) positions, k closest pairs merge.
  const int64_t na = (n + 1) / 2, nb = n / 2;
  const int64_t k = std::min<int64_t>(int64_t(ratio * double(n)), nb > 0 ? na : 0);
  std::vector<int64_t> group(static_cast<size_t>(n));  // token -> its group's B token (or itself)
  std::iota(group.begin(), group.end(), int64_t{0});
  if (k > 0) {
    std::vector<uint8_t> abits(static_cast<size_t>(na * row)), bbits(size_t(nb * row));
    for (int64_t i = 0; i < na; ++i) std::memcpy(&abits[i * row], bits + (2 * i) * row, size_t(row));
    for (int64_t i = 0; i < nb; ++i) std::memcpy(&bbits[i * row], bits + (2 * i + 1) * row, size_t(row));
    std::vector<int32_t> dist(static_cast<size_t>(na * nb));
    BtrHammingMatrix(ThreadPool(1), na, abits.data(), nb, bbits.data(), row, dist.data());
    std::vector<int64_t> best(static_cast<size_t>(na));
    std::vector<int32_t> best_d(static_cast<size_t>(na));
    for (int64_t i = 0; i < na; ++i) {
      const int32_t* di = &dist[i * nb];
      best[i] = std::min_element(di, di + nb) - di;  // first minimum: the lowest b on ties
      best_d[i] = di[best[i]];
    }
    std::vector<int64_t> order(static_cast<size_t>(na));
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return best_d[x] < best_d[y]; });
    for (int64_t j = 0; j < k; ++j) group[2 * order[j]] = 2 * best[order[j]] + 1;
  }

  // Kept tokens (group roots) in original order, and the map.
  BtrMergedPassage out;
  out.num_tokens = n;
  std::vector<int64_t> row_of(size_t(n), -1), roots;
  for (int64_t t = 0; t < n; ++t) {
    if (group[t] == t) {
      row_of[t] = int64_t(roots.size());
      roots.push_back(t);
    }
  }
  const int64_t m = int64_t(roots.size());
  out.merged_tokens = m;
  out.merge_map.resize(size_t(n));
  for (int64_t t = 0; t < n; ++t) out.merge_map[t] = uint32_t(row_of[group[t]]);

  // 4: each group's best 1-bit token for its mean in decode space.
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(m));
  for (int64_t t = 0; t < n; ++t) members[out.merge_map[t]].push_back(t);
  out.codes.assign(size_t(codec.code_size(m)), '\0');
  uint8_t* obits = reinterpret_cast<uint8_t*>(out.codes.data());
  uint8_t* oscales = obits + m * row;
  std::vector<double> mean(static_cast<size_t>(d8));
  for (int64_t r = 0; r < m; ++r) {
    const int64_t root = roots[r];
    float merged_alpha = alpha(root);
    if (members[r].size() == 1) {
      std::memcpy(obits + r * row, bits + root * row, size_t(row));  // untouched token: same bits
    } else {
      std::fill(mean.begin(), mean.end(), 0.0);
      for (int64_t t : members[r]) {
        const double at = alpha(t);
        for (int64_t j = 0; j < d8; ++j) mean[j] += at * (((bits[t * row + j / 8] >> (j % 8)) & 1) ? 1.0 : -1.0);
      }
      double num = 0.0;
      for (int64_t j = 0; j < d8; ++j) {
        mean[j] /= double(members[r].size());
        const bool root_bit = (bits[root * row + j / 8] >> (j % 8)) & 1;
        const bool bit = mean[j] > 0 || (mean[j] == 0 && root_bit);
        if (bit) obits[r * row + j / 8] |= uint8_t(1u << (j % 8));
        num += double(a[j]) * a[j] * (bit ? 1.0 : -1.0) * mean[j];
      }
      merged_alpha = a2 > 0 ? float(num / a2) : 0.0f;
    }
    if (sb == 2) {
      const uint16_t h = F32ToBf16(merged_alpha);
      oscales[2 * r] = uint8_t(h & 0xff);
      oscales[2 * r + 1] = uint8_t(h >> 8);
    } else {
      std::memcpy(oscales + 4 * r, &merged_alpha, 4);
    }
  }
  return out;
}

Status BtrUnmerge(const std::vector<uint32_t>& merge_map, int64_t m, int64_t d, const float* merged,
                  float* out) {
  for (size_t t = 0; t < merge_map.size(); ++t) {
    if (int64_t(merge_map[t]) >= m) {
      return InvalidArgumentError("merge map entry " + std::to_string(t) + " = " + std::to_string(merge_map[t]) +
                                  " >= merged tokens " + std::to_string(m));
    }
    std::memcpy(out + int64_t(t) * d, merged + int64_t(merge_map[t]) * d, size_t(d) * sizeof(float));
  }
  return Status::Ok();
}

StatusOr<std::string> EncodeBtrMergedPassage(const BtrMergedPassage& p) {
  const int64_t n = p.num_tokens, m = p.merged_tokens, na = (n + 1) / 2, nb = n / 2;
  if (n < 0 || n > kMaxBtrMergeTokens || m < 0 || m > n || int64_t(p.merge_map.size()) != n) {
    return InvalidArgumentError("merged passage of " + std::to_string(n) + " tokens, " + std::to_string(m) +
                                " rows and a map of " + std::to_string(p.merge_map.size()) + " entries");
  }
  // Group sizes and roots: a row shared by several tokens is a B token (odd position) with the A
  // tokens (even positions) merged into it; every other row belongs to one token.
  std::vector<int64_t> size(size_t(m), 0), root(size_t(m), -1);
  for (int64_t t = 0; t < n; ++t) {
    if (p.merge_map[t] >= uint64_t(m)) return InvalidArgumentError("merge map entry " + std::to_string(t) + " >= m");
    ++size[p.merge_map[t]];
  }
  std::string flags(size_t((na + 7) / 8), '\0'), partners;
  int64_t next_row = 0;
  for (int64_t t = 0; t < n; ++t) {
    const uint32_t r = p.merge_map[t];
    const bool merged_a = t % 2 == 0 && size[r] > 1;
    if (merged_a) {
      flags[size_t(t / 2 / 8)] = char(uint8_t(flags[size_t(t / 2 / 8)]) | (1u << (t / 2 % 8)));
      continue;
    }
    if (int64_t(r) != next_row++ || (size[r] > 1 && t % 2 == 0)) {
      return InvalidArgumentError("merge map is not a bipartite A -> B matching in token order (token " +
                                  std::to_string(t) + ")");
    }
    root[r] = t;
  }
  if (next_row != m) return InvalidArgumentError("merge map leaves rows without a kept token");
  for (int64_t t = 0; t < n; t += 2) {
    if (!((uint8_t(flags[size_t(t / 2 / 8)]) >> (t / 2 % 8)) & 1)) continue;
    const int64_t b = (root[p.merge_map[t]] - 1) / 2;
    if (b < 0 || b >= nb) return InvalidArgumentError("merged token " + std::to_string(t) + " has no B partner");
    partners.push_back(char(b & 0xff));
    partners.push_back(char(b >> 8));
  }
  std::string s;
  s.reserve(8 + flags.size() + partners.size() + p.codes.size());
  PutU32(&s, uint32_t(n));
  PutU32(&s, uint32_t(m));
  s += flags;
  s += partners;
  s += p.codes;
  return s;
}

StatusOr<BtrMergedPassage> DecodeBtrMergedPassage(const Codec& codec, const std::string& blob) {
  if (blob.size() < 8) return DataLossError("merged btr blob of " + std::to_string(blob.size()) + " bytes is truncated");
  BtrMergedPassage p;
  p.num_tokens = GetU32(blob.data());
  p.merged_tokens = GetU32(blob.data() + 4);
  const int64_t n = p.num_tokens, m = p.merged_tokens, na = (n + 1) / 2, nb = n / 2;
  if (n > kMaxBtrMergeTokens || m > n || (m == 0 && n > 0)) {
    return DataLossError("merged btr blob has " + std::to_string(m) + " merged rows for " + std::to_string(n) +
                         " tokens (at most " + std::to_string(kMaxBtrMergeTokens) + ")");
  }
  const size_t flag_bytes = size_t((na + 7) / 8);
  if (blob.size() < 8 + flag_bytes) {
    return DataLossError("merged btr blob of " + std::to_string(blob.size()) + " bytes is truncated");
  }
  const uint8_t* flags = reinterpret_cast<const uint8_t*>(blob.data()) + 8;
  int64_t k = 0;
  for (int64_t i = 0; i < int64_t(flag_bytes) * 8; ++i) {
    if (!((flags[i / 8] >> (i % 8)) & 1)) continue;
    if (i >= na) return DataLossError("merged btr blob flags A token " + std::to_string(i) + " of " + std::to_string(na));
    ++k;
  }
  const uint64_t want = 8 + flag_bytes + 2 * uint64_t(k) + uint64_t(codec.code_size(m));
  if (n - k != m || blob.size() != want) {
    return DataLossError("merged btr blob of " + std::to_string(blob.size()) + " bytes with " + std::to_string(k) +
                         " merged tokens, expected " + std::to_string(want) + " bytes and " +
                         std::to_string(n - m) + " merged for " + std::to_string(n) + " -> " + std::to_string(m) +
                         " tokens");
  }
  // Kept tokens take rows in token order; a merged A token takes its B partner's row.
  p.merge_map.assign(size_t(n), 0);
  uint32_t next_row = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (t % 2 == 0 && ((flags[t / 2 / 8] >> (t / 2 % 8)) & 1)) continue;
    p.merge_map[t] = next_row++;
  }
  const uint8_t* partners = flags + flag_bytes;
  for (int64_t t = 0, j = 0; t < n; t += 2) {
    if (!((flags[t / 2 / 8] >> (t / 2 % 8)) & 1)) continue;
    const int64_t b = int64_t(partners[2 * j]) | (int64_t(partners[2 * j + 1]) << 8);
    ++j;
    if (b >= nb) {
      return DataLossError("merged token " + std::to_string(t) + " names B token " + std::to_string(b) + " of " +
                           std::to_string(nb));
    }
    p.merge_map[t] = p.merge_map[2 * b + 1];
  }
  p.codes = blob.substr(8 + flag_bytes + 2 * size_t(k));
  return p;
}

}  // namespace memoria

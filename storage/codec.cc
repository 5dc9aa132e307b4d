#include "storage/codec.h"

#include <immintrin.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "kernels/btr_kernels.h"
#include "kernels/dtype.h"
#include "storage/btr_merge.h"

namespace memoria {
namespace {

// The shortest decimal text that parses back to v ("0.2", not "0.20000000000000001"): specs are
// compared with ==, so a flag printed by ToFlag must read back to the same double.
std::string ShortestDecimal(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

using Json = nlohmann::json;

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

bool AllFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Copies rows (n, d) with stride ldx into a zero-padded contiguous (n, d_pad) buffer.
void PadRows(int64_t n, int64_t d, const float* x, int64_t ldx, int64_t d_pad,
             std::vector<float>* out) {
  out->assign(n * d_pad, 0.0f);
  for (int64_t i = 0; i < n; ++i) std::memcpy(out->data() + i * d_pad, x + i * ldx, d * sizeof(float));
}

Status CheckCodeBytes(const CodecSpec& spec, int64_t n, int64_t code_bytes) {
  const int64_t want = n * spec.BytesPerToken();
  if (n < 0 || code_bytes != want) {
    return DataLossError(spec.ToString() + " codes for " + std::to_string(n) + " tokens are " +
                         std::to_string(code_bytes) + " bytes, expected " + std::to_string(n) +
                         " * " + std::to_string(spec.BytesPerToken()) + " = " +
                         std::to_string(want));
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------
// none: f32 or bf16 rows.

class NoneCodec : public Codec {
 public:
  explicit NoneCodec(CodecSpec spec) : Codec(std::move(spec)), bf16_(spec_.none_dtype == "bf16") {}
  bool ready() const override { return true; }

  Status Encode(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                uint8_t* codes) const override {
    const int64_t d = dim();
    pool.ParallelFor(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if (bf16_) {
          ConvertF32ToBf16(x + i * ldx, reinterpret_cast<uint16_t*>(codes + i * d * 2), d);
        } else {
          std::memcpy(codes + i * d * 4, x + i * ldx, d * 4);
        }
      }
    });
    return Status::Ok();
  }

  Status Decode(const ThreadPool& pool, int64_t n, const uint8_t* codes, int64_t code_bytes,
                float* x, int64_t ldx) const override {
    RETURN_IF_ERROR(CheckCodeBytes(spec_, n, code_bytes));
    const int64_t d = dim();
    pool.ParallelFor(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float* o = x + i * ldx;
        if (!bf16_) {
          std::memcpy(o, codes + i * d * 4, d * 4);
          continue;
        }
        const uint8_t* src = codes + i * d * 2;
        int64_t j = 0;
#ifdef __AVX2__
        for (; j + 8 <= d; j += 8) {
          const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j * 2));
          _mm256_storeu_ps(o + j, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
        }
#endif
        for (; j < d; ++j) {
          uint16_t h;
          std::memcpy(&h, src + j * 2, 2);
          o[j] = Bf16ToF32(h);
        }
      }
    });
    return Status::Ok();
  }

  Status Train(const ThreadPool&, int64_t, const float*, int64_t, const CodecTrainOptions&,
               CodecTrainReport* report) override {
    if (report != nullptr) *report = CodecTrainReport{};
    return Status::Ok();
  }
  std::string SerializeState() const override { return {}; }
  Status LoadState(const std::string& bytes) override {
    if (!bytes.empty()) {
      return DataLossError("codec none has no state, got " + std::to_string(bytes.size()) + " bytes");
    }
    return Status::Ok();
  }

 private:
  bool bf16_;
};

// ------------------------------------------------------------------------------------------
// pq: product quantization (kernels/pq_kernels.h).

class PqCodec : public Codec {
 public:
  explicit PqCodec(CodecSpec spec) : Codec(std::move(spec)) {
    const int64_t g = spec_.pq_subspaces;
    shape_ = PqShape{RoundUp(spec_.dim, g), g, int64_t{1} << spec_.pq_bits};
  }
  bool ready() const override { return !centroids_.empty(); }
  const PqShape& shape() const { return shape_; }
  const std::vector<float>& centroids() const { return centroids_; }

  Status Encode(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                uint8_t* codes) const override {
    if (!ready()) return FailedPreconditionError(spec_.ToString() + ": codebooks not trained or loaded");
    if (shape_.d == dim()) {
      PqEncode(pool, shape_, centroids_.data(), tables_, n, x, ldx, codes);
    } else {
      std::vector<float> padded;
      PadRows(n, dim(), x, ldx, shape_.d, &padded);
      PqEncode(pool, shape_, centroids_.data(), tables_, n, padded.data(), shape_.d, codes);
    }
    return Status::Ok();
  }

  Status Decode(const ThreadPool& pool, int64_t n, const uint8_t* codes, int64_t code_bytes,
                float* x, int64_t ldx) const override {
    if (!ready()) return FailedPreconditionError(spec_.ToString() + ": codebooks not trained or loaded");
    RETURN_IF_ERROR(CheckCodeBytes(spec_, n, code_bytes));
    // With C = 2^bits every id of the stored width is valid; no per-code check is needed.
    PqDecode(pool, shape_, centroids_.data(), n, codes, dim(), x, ldx);
    return Status::Ok();
  }

  Status Train(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
               const CodecTrainOptions& options, CodecTrainReport* report) override {
    if (n < shape_.ksub) {
      return InvalidArgumentError(spec_.ToString() + " training needs at least C = " +
                                  std::to_string(shape_.ksub) + " vectors, got " + std::to_string(n));
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> centroids(shape_.M * shape_.ksub * shape_.dsub());
    PqTrainReport rep;
    if (shape_.d == dim()) {
      PqTrain(pool, shape_, n, x, ldx, options.pq, centroids.data(), &rep);
    } else {
      std::vector<float> padded;
      PadRows(n, dim(), x, ldx, shape_.d, &padded);
      PqTrain(pool, shape_, n, padded.data(), shape_.d, options.pq, centroids.data(), &rep);
    }
    SetCentroids(std::move(centroids));
    if (report != nullptr) {
      report->distortion = rep.distortion;
      report->training_vectors = rep.training_vectors;
      report->seconds = SecondsSince(t0);
    }
    return Status::Ok();
  }

  std::string SerializeState() const override {
    return std::string(reinterpret_cast<const char*>(centroids_.data()), centroids_.size() * sizeof(float));
  }

  Status LoadState(const std::string& bytes) override {
    const int64_t count = shape_.M * shape_.ksub * shape_.dsub();
    if (static_cast<int64_t>(bytes.size()) != count * 4) {
      return DataLossError(spec_.ToString() + " codebooks are " + std::to_string(bytes.size()) +
                           " bytes, expected g * C * d_pad/g * 4 = " + std::to_string(count * 4));
    }
    std::vector<float> c(count);
    std::memcpy(c.data(), bytes.data(), bytes.size());
    if (!AllFinite(c.data(), count)) return DataLossError(spec_.ToString() + " codebooks hold NaN or Inf");
    SetCentroids(std::move(c));
    return Status::Ok();
  }

  void SetCentroids(std::vector<float> c) {
    centroids_ = std::move(c);
    PqPrepareTables(shape_, centroids_.data(), &tables_);
  }

 private:
  PqShape shape_;
  std::vector<float> centroids_;  // (g, C, dsub)
  PqTables tables_;               // norms and transposed centroids for encoding
};

// ------------------------------------------------------------------------------------------
// btr: calibrated 1-bit signs (kernels/btr_kernels.h).

class BtrCodec : public Codec {
 public:
  explicit BtrCodec(CodecSpec spec) : Codec(std::move(spec)), d8_(RoundUp(spec_.dim, 8)) {}
  bool ready() const override { return !mu_.empty(); }

  Status Encode(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                uint8_t* codes) const override {
    if (!ready()) return FailedPreconditionError(spec_.ToString() + ": not calibrated or loaded");
    thread_local std::vector<float> scales;
    scales.resize(n);
    if (d8_ == dim()) {
      BtrEncode(pool, n, d8_, x, ldx, mu_.data(), a_.data(), codes, scales.data());
    } else {
      std::vector<float> padded;
      PadRows(n, dim(), x, ldx, d8_, &padded);
      BtrEncode(pool, n, d8_, padded.data(), d8_, mu_.data(), a_.data(), codes, scales.data());
    }
    uint8_t* out = codes + n * (d8_ / 8);
    if (spec_.btr_scale_bytes == 4) {
      std::memcpy(out, scales.data(), n * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToBf16(scales[i]);
        std::memcpy(out + i * 2, &h, 2);
      }
    }
    return Status::Ok();
  }

  Status Decode(const ThreadPool& pool, int64_t n, const uint8_t* codes, int64_t code_bytes,
                float* x, int64_t ldx) const override {
    if (!ready()) return FailedPreconditionError(spec_.ToString() + ": not calibrated or loaded");
    RETURN_IF_ERROR(CheckCodeBytes(spec_, n, code_bytes));
    thread_local std::vector<float> scales;
    scales.resize(n);
    const uint8_t* in = codes + n * (d8_ / 8);
    if (spec_.btr_scale_bytes == 4) {
      std::memcpy(scales.data(), in, n * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, in + i * 2, 2);
        scales[i] = Bf16ToF32(h);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(scales[i])) {
        return DataLossError(spec_.ToString() + ": token " + std::to_string(i) + " has scale " +
                             std::to_string(scales[i]));
      }
    }
    BtrDecode(pool, n, d8_, codes, scales.data(), mu_.data(), a_.data(), dim(), x, ldx);
    return Status::Ok();
  }

  // Merged passages (spec merge > 0): encode all n tokens, merge near-duplicates by Hamming
  // distance (storage/btr_merge.h), keep the merged codes and the token -> merged-row map.
  Status EncodePassage(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                       std::string* blob) const override {
    if (!spec_.merges_tokens()) return Codec::EncodePassage(pool, n, x, ldx, blob);
    std::string codes(code_size(n), '\0');
    RETURN_IF_ERROR(Encode(pool, n, x, ldx, reinterpret_cast<uint8_t*>(codes.data())));
    ASSIGN_OR_RETURN(BtrMergedPassage merged,
                     BtrMergeTokens(*this, n, reinterpret_cast<const uint8_t*>(codes.data()),
                                    static_cast<int64_t>(codes.size()), spec_.btr_merge_ratio));
    ASSIGN_OR_RETURN(*blob, EncodeBtrMergedPassage(merged));
    return Status::Ok();
  }

  Status DecodePassage(const ThreadPool& pool, int64_t n, const uint8_t* blob, int64_t blob_bytes,
                       float* x, int64_t ldx) const override {
    if (!spec_.merges_tokens()) return Codec::DecodePassage(pool, n, blob, blob_bytes, x, ldx);
    if (!ready()) return FailedPreconditionError(spec_.ToString() + ": not calibrated or loaded");
    ASSIGN_OR_RETURN(BtrMergedPassage merged,
                     DecodeBtrMergedPassage(*this, std::string(reinterpret_cast<const char*>(blob),
                                                               static_cast<size_t>(blob_bytes))));
    if (merged.num_tokens != n) {
      return DataLossError(spec_.ToString() + ": merged passage holds " + std::to_string(merged.num_tokens) +
                           " tokens, expected " + std::to_string(n));
    }
    const int64_t m = merged.merged_tokens, d = dim();
    std::vector<float> rows(static_cast<size_t>(m * d));
    RETURN_IF_ERROR(Decode(pool, m, reinterpret_cast<const uint8_t*>(merged.codes.data()),
                           static_cast<int64_t>(merged.codes.size()), rows.data(), d));
    // Map entries were checked (< m) by DecodeBtrMergedPassage.
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(x + t * ldx, rows.data() + int64_t{merged.merge_map[t]} * d, static_cast<size_t>(d) * 4);
    }
    return Status::Ok();
  }

  Status Train(const ThreadPool&, int64_t n, const float* x, int64_t ldx,
               const CodecTrainOptions&, CodecTrainReport* report) override {
    if (n < 1) return InvalidArgumentError("btr calibration needs at least 1 vector, got 0");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> mu(d8_, 0.0f), a(d8_, 0.0f);
    BtrCalibrate(n, dim(), x, ldx, mu.data(), a.data());
    mu_ = std::move(mu);
    a_ = std::move(a);
    if (report != nullptr) {
      *report = CodecTrainReport{};
      report->training_vectors = n;
      report->seconds = SecondsSince(t0);
    }
    return Status::Ok();
  }

  std::string SerializeState() const override {
    std::string out(d8_ * 8, '\0');
    std::memcpy(out.data(), mu_.data(), d8_ * 4);
    std::memcpy(out.data() + d8_ * 4, a_.data(), d8_ * 4);
    return out;
  }

  Status LoadState(const std::string& bytes) override {
    if (static_cast<int64_t>(bytes.size()) != d8_ * 8) {
      return DataLossError(spec_.ToString() + " calibration is " + std::to_string(bytes.size()) +
                           " bytes, expected 2 * d8 * 4 = " + std::to_string(d8_ * 8));
    }
    std::vector<float> mu(d8_), a(d8_);
    std::memcpy(mu.data(), bytes.data(), d8_ * 4);
    std::memcpy(a.data(), bytes.data() + d8_ * 4, d8_ * 4);
    if (!AllFinite(mu.data(), d8_) || !AllFinite(a.data(), d8_)) {
      return DataLossError(spec_.ToString() + " calibration holds NaN or Inf");
    }
    mu_ = std::move(mu);
    a_ = std::move(a);
    return Status::Ok();
  }

 private:
  int64_t d8_;
  std::vector<float> mu_, a_;  // (d8) each
};

// ------------------------------------------------------------------------------------------
// A minimal safetensors reader/writer for codebook files (storage does not depend on engine/).

Status ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::Ok();
}

}  // namespace

const char* CodecIdName(CodecId id) {
  switch (id) {
    case CodecId::kNone: return "none";
    case CodecId::kPq: return "pq";
    case CodecId::kBtr: return "btr";
  }
  return "?";
}

StatusOr<CodecSpec> CodecSpec::Parse(const std::string& text, int64_t dim) {
  CodecSpec spec;
  spec.dim = dim;
  const auto colon = text.find(':');
  const std::string name = text.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("codec '" + text + "': " + why +
                                " (expected none[:f32|bf16], pq:g=G[,bits=8|16], "
                                "btr[:scale=bf16|f32][,merge=R])");
  };
  if (name == "none") {
    spec.id = CodecId::kNone;
    if (!rest.empty()) spec.none_dtype = rest;
  } else if (name == "pq" || name == "btr") {
    spec.id = name == "pq" ? CodecId::kPq : CodecId::kBtr;
    std::stringstream ss(rest);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const auto eq = item.find('=');
      if (eq == std::string::npos) return bad("'" + item + "' is not key=value");
      const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      try {
        if (spec.id == CodecId::kPq && key == "g") {
          spec.pq_subspaces = std::stoll(value);
        } else if (spec.id == CodecId::kPq && key == "bits") {
          spec.pq_bits = std::stoi(value);
        } else if (spec.id == CodecId::kBtr && key == "scale") {
          if (value != "bf16" && value != "f32") return bad("scale must be bf16 or f32");
          spec.btr_scale_bytes = value == "f32" ? 4 : 2;
        } else if (spec.id == CodecId::kBtr && key == "merge") {
          size_t used = 0;
          spec.btr_merge_ratio = std::stod(value, &used);
          if (used != value.size()) return bad("'" + value + "' is not a number");
        } else {
          return bad("unknown key '" + key + "'");
        }
      } catch (const std::exception&) {
        return bad("'" + value + "' is not a number");
      }
    }
  } else {
    return bad("unknown codec '" + name + "'");
  }
  auto codec = CreateCodec(spec);  // validates
  if (!codec.ok()) return codec.status();
  return spec;
}

std::string CodecSpec::ToJson() const {
  Json j;
  j["id"] = CodecIdName(id);
  j["dim"] = dim;
  if (id == CodecId::kNone) j["dtype"] = none_dtype;
  if (id == CodecId::kPq) {
    j["g"] = pq_subspaces;
    j["bits"] = pq_bits;
  }
  if (id == CodecId::kBtr) {
    j["scale_bytes"] = btr_scale_bytes;
    if (btr_merge_ratio > 0.0) j["merge"] = btr_merge_ratio;  // absent = 0 (stores before merging)
  }
  return j.dump();
}

StatusOr<CodecSpec> CodecSpec::FromJson(const std::string& text) {
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLossError("codec spec is not a JSON object: " + text);
  CodecSpec spec;
  // Integer fields must be JSON integers within [0, 2^31): nlohmann's get<int64_t>() of a float
  // such as 1e300 is an out-of-range float-to-integer conversion (undefined behaviour).
  auto int_field = [&](const char* key) -> int64_t {
    const Json& v = j.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      throw std::out_of_range(std::string("'") + key + "' is not an integer in [0, 2^31): " +
                              v.dump());
    }
    return v.get<int64_t>();
  };
  try {
    const std::string id = j.at("id").get<std::string>();
    spec.dim = int_field("dim");
    if (id == "none") {
      spec.id = CodecId::kNone;
      spec.none_dtype = j.at("dtype").get<std::string>();
    } else if (id == "pq") {
      spec.id = CodecId::kPq;
      spec.pq_subspaces = int_field("g");
      spec.pq_bits = static_cast<int>(int_field("bits"));
    } else if (id == "btr") {
      spec.id = CodecId::kBtr;
      spec.btr_scale_bytes = static_cast<int>(int_field("scale_bytes"));
      if (j.contains("merge")) {
        if (!j.at("merge").is_number()) throw std::out_of_range("'merge' is not a number: " + j.at("merge").dump());
        spec.btr_merge_ratio = j.at("merge").get<double>();
      }
    } else {
      return DataLossError("codec spec has unknown id '" + id + "': " + text);
    }
  } catch (const std::exception& e) {
    return DataLossError(std::string("codec spec ") + text + ": " + e.what());
  }
  auto codec = CreateCodec(spec);
  if (!codec.ok()) return DataLossError("stored codec spec is invalid: " + codec.status().message());
  return spec;
}

std::string CodecSpec::ToString() const {
  switch (id) {
    case CodecId::kNone:
      return "none(d=" + std::to_string(dim) + ", " + none_dtype + ")";
    case CodecId::kPq:
      return "pq(d=" + std::to_string(dim) + ", g=" + std::to_string(pq_subspaces) +
             ", C=" + std::to_string(int64_t{1} << std::clamp(pq_bits, 0, 62)) + ")";
    case CodecId::kBtr:
      return "btr(d=" + std::to_string(dim) + ", scale=" + (btr_scale_bytes == 4 ? "f32" : "bf16") +
             (merges_tokens() ? ", merge=" + ShortestDecimal(btr_merge_ratio) : "") + ")";
  }
  return "codec(id=" + std::to_string(static_cast<int>(id)) + ")";
}

std::string CodecSpec::ToFlag() const {
  switch (id) {
    case CodecId::kNone:
      return none_dtype == "f32" ? "none" : "none:" + none_dtype;
    case CodecId::kPq:
      return "pq:g=" + std::to_string(pq_subspaces) + ",bits=" + std::to_string(pq_bits);
    case CodecId::kBtr: {
      std::string options;
      if (btr_scale_bytes == 4) options = "scale=f32";
      if (merges_tokens()) {
        options += (options.empty() ? "" : ",") + std::string("merge=") + ShortestDecimal(btr_merge_ratio);
      }
      return options.empty() ? "btr" : "btr:" + options;
    }
  }
  return ToString();
}

int64_t CodecSpec::BytesPerToken() const {
  switch (id) {
    case CodecId::kNone:
      return dim * (none_dtype == "bf16" ? 2 : 4);
    case CodecId::kPq:
      // g * ceil(log2 C) / 8 with C = 2^bits.
      return pq_subspaces * pq_bits / 8;
    case CodecId::kBtr:
      return RoundUp(dim, 8) / 8 + btr_scale_bytes;
  }
  return 0;
}

double CodecSpec::CompressionRatio(int reference_bytes) const {
  const int64_t bytes = BytesPerToken();
  return bytes > 0 ? double(reference_bytes) * double(dim) / double(bytes) : 0.0;
}

bool CodecSpec::operator==(const CodecSpec& o) const {
  if (id != o.id || dim != o.dim) return false;
  switch (id) {
    case CodecId::kNone: return none_dtype == o.none_dtype;
    case CodecId::kPq: return pq_subspaces == o.pq_subspaces && pq_bits == o.pq_bits;
    case CodecId::kBtr: return btr_scale_bytes == o.btr_scale_bytes && btr_merge_ratio == o.btr_merge_ratio;
  }
  return false;
}

Status Codec::EncodePassage(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                            std::string* blob) const {
  if (n < 0) return InvalidArgumentError("passage of " + std::to_string(n) + " tokens");
  blob->assign(static_cast<size_t>(code_size(n)), '\0');
  return Encode(pool, n, x, ldx, reinterpret_cast<uint8_t*>(blob->data()));
}

Status Codec::DecodePassage(const ThreadPool& pool, int64_t n, const uint8_t* blob, int64_t blob_bytes,
                            float* x, int64_t ldx) const {
  return Decode(pool, n, blob, blob_bytes, x, ldx);
}

StatusOr<std::unique_ptr<Codec>> CreateCodec(const CodecSpec& spec) {
  if (spec.dim < 1 || spec.dim > kMaxCodecDim) {
    return InvalidArgumentError("codec dim must be in [1, " + std::to_string(kMaxCodecDim) + "], got " +
                                std::to_string(spec.dim));
  }
  switch (spec.id) {
    case CodecId::kNone:
      if (spec.none_dtype != "f32" && spec.none_dtype != "bf16") {
        return InvalidArgumentError("codec none: dtype must be f32 or bf16, got '" + spec.none_dtype + "'");
      }
      return std::unique_ptr<Codec>(new NoneCodec(spec));
    case CodecId::kPq:
      if (spec.pq_subspaces < 1 || spec.pq_subspaces > spec.dim) {
        return InvalidArgumentError("codec pq: g must be in [1, d = " + std::to_string(spec.dim) +
                                    "], got " + std::to_string(spec.pq_subspaces));
      }
      if (spec.pq_bits != 8 && spec.pq_bits != 16) {
        return InvalidArgumentError("codec pq: bits must be 8 (C = 256) or 16 (C = 65536), got " +
                                    std::to_string(spec.pq_bits));
      }
      return std::unique_ptr<Codec>(new PqCodec(spec));
    case CodecId::kBtr:
      if (spec.btr_scale_bytes != 2 && spec.btr_scale_bytes != 4) {
        return InvalidArgumentError("codec btr: scale bytes must be 2 (bf16) or 4 (f32), got " +
                                    std::to_string(spec.btr_scale_bytes));
      }
      // 0.9 keeps at least a tenth of the tokens: beyond that a passage is no longer its tokens.
      if (!(spec.btr_merge_ratio >= 0.0 && spec.btr_merge_ratio <= kMaxBtrMergeRatio)) {
        return InvalidArgumentError("codec btr: merge must be in [0, " + ShortestDecimal(kMaxBtrMergeRatio) +
                                    "], got " + ShortestDecimal(spec.btr_merge_ratio));
      }
      return std::unique_ptr<Codec>(new BtrCodec(spec));
  }
  return InvalidArgumentError("unknown codec id " + std::to_string(static_cast<int>(spec.id)));
}

Status ImportPqCodebooks(const std::string& path, const std::string& tensor_name, Codec* codec) {
  if (codec->spec().id != CodecId::kPq) {
    return InvalidArgumentError("cannot import PQ codebooks into " + codec->spec().ToString());
  }
  std::string file;
  RETURN_IF_ERROR(ReadWholeFile(path, &file));
  if (file.size() < 8) return DataLossError(path + ": " + std::to_string(file.size()) + " bytes, too short for safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > file.size() - 8) {
    return DataLossError(path + ": header length " + std::to_string(header_len) + " exceeds file size " +
                         std::to_string(file.size()));
  }
  const Json header = Json::parse(file.begin() + 8, file.begin() + 8 + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return DataLossError(path + ": header is not a JSON object");
  if (!header.contains(tensor_name)) return NotFoundError(path + ": no tensor '" + tensor_name + "'");
  const Json& t = header[tensor_name];
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
  try {
    dtype = t.at("dtype").get<std::string>();
    shape = t.at("shape").get<std::vector<int64_t>>();
    const auto offsets = t.at("data_offsets").get<std::vector<uint64_t>>();
    if (offsets.size() != 2) return DataLossError(path + ": '" + tensor_name + "' data_offsets needs 2 values");
    begin = offsets[0];
    end = offsets[1];
  } catch (const std::exception& e) {
    return DataLossError(path + ": tensor '" + tensor_name + "': " + e.what());
  }
  if (dtype != "F32" && dtype != "BF16") {
    return InvalidArgumentError(path + ": '" + tensor_name + "' has dtype " + dtype + ", expected F32 or BF16");
  }
  const auto& pq = static_cast<PqCodec&>(*codec);
  const std::vector<int64_t> want = {pq.shape().M, pq.shape().ksub, pq.shape().dsub()};
  auto shape_str = [](const std::vector<int64_t>& s) {
    std::string o = "[";
    for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
    return o + "]";
  };
  if (shape != want) {
    return InvalidArgumentError(path + ": '" + tensor_name + "' has shape " + shape_str(shape) + ", " +
                                codec->spec().ToString() + " needs [g, C, d_pad/g] = " + shape_str(want));
  }
  const int64_t count = want[0] * want[1] * want[2];
  const uint64_t elem = dtype == "F32" ? 4 : 2;
  const uint64_t data_size = file.size() - 8 - header_len;
  if (begin > end || end > data_size || end - begin != count * elem) {
    return DataLossError(path + ": '" + tensor_name + "' data_offsets [" + std::to_string(begin) + ", " +
                         std::to_string(end) + "] do not hold " + std::to_string(count) + " x " +
                         dtype + " within " + std::to_string(data_size) + " data bytes");
  }
  const char* data = file.data() + 8 + header_len + begin;
  std::string state(count * 4, '\0');
  if (dtype == "F32") {
    std::memcpy(state.data(), data, count * 4);
  } else {
    for (int64_t i = 0; i < count; ++i) {
      uint16_t h;
      std::memcpy(&h, data + i * 2, 2);
      const float f = Bf16ToF32(h);
      std::memcpy(state.data() + i * 4, &f, 4);
    }
  }
  return codec->LoadState(state).WithContext(path);
}

Status ExportPqCodebooks(const Codec& codec, const std::string& path, const std::string& tensor_name) {
  if (codec.spec().id != CodecId::kPq || !codec.ready()) {
    return FailedPreconditionError("no trained PQ codebooks to export from " + codec.spec().ToString());
  }
  const auto& pq = static_cast<const PqCodec&>(codec);
  const std::string state = codec.SerializeState();
  Json header;
  header[tensor_name] = {{"dtype", "F32"},
                         {"shape", {pq.shape().M, pq.shape().ksub, pq.shape().dsub()}},
                         {"data_offsets", {0, state.size()}}};
  header["__metadata__"] = {{"codec", codec.spec().ToJson()}};
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');  // data section 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return InternalError("cannot write " + tmp);
    const uint64_t n = h.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(h.data(), h.size());
    out.write(state.data(), state.size());
    if (!out) return InternalError("short write to " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return InternalError("cannot rename " + tmp + " to " + path);
  return Status::Ok();
}

}  // namespace memoria

#include "engine/lumen.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

namespace memoria {

std::vector<int> FidQuestionIds(const Tokenizer& tokenizer, const FidTemplate& tmpl,
                                const std::string& question) {
  return tokenizer.Encode(tmpl.question_prefix + question, /*add_bos=*/false, /*add_eos=*/false);
}

std::vector<int> FidPassageIds(const Tokenizer& tokenizer, const FidTemplate& tmpl,
                               const std::string& title, const std::string& text, int eos_id) {
  std::vector<int> ids = tokenizer.Encode(tmpl.title_prefix + title + tmpl.context_prefix + text,
                                          /*add_bos=*/false, /*add_eos=*/false);
  ids.push_back(eos_id);
  return ids;
}

Status RawMemoryDecoder::Decode(const EncodedMemory& in, int64_t d, float* out) const {
  const size_t expected = static_cast<size_t>(in.tokens * d * DTypeSize(dtype_));
  if (in.tokens <= 0 || in.size != expected || in.data == nullptr) {
    return DataLossError(
        fmt::format("raw {} memory blob of {} bytes, expected {} tokens x {} x {} = {}",
                    DTypeName(dtype_), in.size, in.tokens, d, DTypeSize(dtype_), expected));
  }
  ConvertToF32(dtype_, in.data, out, in.tokens * d);
  return Status::Ok();
}

StatusOr<std::unique_ptr<LumenModel>> LumenModel::Create(std::shared_ptr<const T5Model> model,
                                                         const LumenOptions& options) {
  if (!(options.alpha >= 0.0 && options.alpha <= 1.0)) {
    return InvalidArgumentError(fmt::format("LUMEN alpha {} outside [0, 1]", options.alpha));
  }
  const int layers = model->config().num_layers;
  const int live = static_cast<int>(std::lround(options.alpha * layers));
  return std::unique_ptr<LumenModel>(new LumenModel(std::move(model), layers - live));
}

Status LumenModel::MemoryEncode(const ThreadPool& pool,
                                const std::vector<std::vector<int>>& passages,
                                std::vector<std::vector<float>>* out, LumenScratch* scratch,
                                const std::function<Status()>& check) const {
  LumenScratch local;
  if (scratch == nullptr) scratch = &local;
  const int64_t d = model_->config().d_model;
  std::vector<int64_t> offsets{0};
  for (size_t i = 0; i < passages.size(); ++i) {
    if (passages[i].empty()) {
      return InvalidArgumentError(
          fmt::format("passage {} of {} has no tokens", i, passages.size()));
    }
    offsets.push_back(offsets.back() + static_cast<int64_t>(passages[i].size()));
  }
  std::vector<float> h(static_cast<size_t>(offsets.back() * d));
  for (size_t i = 0; i < passages.size(); ++i) {
    Status s = model_->Embed(passages[i].data(), static_cast<int64_t>(passages[i].size()),
                             h.data() + offsets[i] * d);
    if (!s.ok()) return s.WithContext(fmt::format("passage {}", i));
  }
  RETURN_IF_ERROR(
      model_->EncoderLayers(pool, 0, memory_layers_, offsets, h.data(), &scratch->encoder, check));
  out->resize(passages.size());
  for (size_t i = 0; i < passages.size(); ++i) {
    (*out)[i].assign(h.begin() + offsets[i] * d, h.begin() + offsets[i + 1] * d);
  }
  return Status::Ok();
}

Status LumenModel::LiveEncodeImpl(const ThreadPool& pool, const std::vector<int>& question_ids,
                                  const std::vector<int64_t>& passage_tokens,
                                  const std::function<Status(size_t, float*)>& fill,
                                  LiveEncoding* out, LumenScratch* scratch,
                                  const std::function<Status()>& check) const {
  LumenScratch local;
  if (scratch == nullptr) scratch = &local;
  const int64_t d = model_->config().d_model;
  const int64_t q = static_cast<int64_t>(question_ids.size());
  if (q == 0) return InvalidArgumentError("LUMEN: empty question");
  if (passage_tokens.empty()) return InvalidArgumentError("LUMEN: no passages");
  // MemEnc(Q): the question alone through the memory layers, once per query.
  std::vector<float>& qmem = scratch->question_memory;
  qmem.resize(static_cast<size_t>(q * d));
  RETURN_IF_ERROR(model_->Embed(question_ids.data(), q, qmem.data()).WithContext("question"));
  RETURN_IF_ERROR(model_->EncoderLayers(pool, 0, memory_layers_, {0, q}, qmem.data(),
                                        &scratch->encoder, check));

  out->offsets.assign(1, 0);
  for (int64_t t : passage_tokens) out->offsets.push_back(out->offsets.back() + q + t);
  out->h.resize(static_cast<size_t>(out->offsets.back() * d));
  for (size_t i = 0; i < passage_tokens.size(); ++i) {
    float* rows = out->h.data() + out->offsets[i] * d;
    std::memcpy(rows, qmem.data(), static_cast<size_t>(q * d) * sizeof(float));
    Status s = fill(i, rows + q * d);
    if (!s.ok()) return s.WithContext(fmt::format("passage {}", i));
  }
  const int L = model_->config().num_layers;
  RETURN_IF_ERROR(model_->EncoderLayers(pool, memory_layers_, L, out->offsets, out->h.data(),
                                        &scratch->encoder, check));
  model_->EncoderFinalNorm(pool, out->h.data(), out->offsets.back());
  return Status::Ok();
}

Status LumenModel::LiveEncode(const ThreadPool& pool, const std::vector<int>& question_ids,
                              const std::vector<MemoryVectors>& memories, LiveEncoding* out,
                              LumenScratch* scratch, const std::function<Status()>& check) const {
  const int64_t d = model_->config().d_model;
  std::vector<int64_t> tokens;
  for (size_t i = 0; i < memories.size(); ++i) {
    const MemoryVectors& m = memories[i];
    if (m.d != d || m.tokens <= 0 || m.data == nullptr ||
        (m.dtype != DType::kF32 && m.dtype != DType::kBF16)) {
      return InvalidArgumentError(fmt::format(
          "passage {}: memory of {} tokens x d {} ({}{}), expected > 0 tokens x d_model {} in f32 "
          "or bf16",
          i, m.tokens, m.d, DTypeName(m.dtype), m.data == nullptr ? ", null data" : "", d));
    }
    tokens.push_back(m.tokens);
  }
  auto fill = [&](size_t i, float* dst) -> Status {
    ConvertToF32(memories[i].dtype, memories[i].data, dst, memories[i].tokens * d);
    return Status::Ok();
  };
  return LiveEncodeImpl(pool, question_ids, tokens, fill, out, scratch, check);
}

Status LumenModel::LiveEncode(const ThreadPool& pool, const std::vector<int>& question_ids,
                              const std::vector<EncodedMemory>& memories,
                              const MemoryDecoder& decoder, LiveEncoding* out,
                              LumenScratch* scratch, const std::function<Status()>& check) const {
  const int64_t d = model_->config().d_model;
  std::vector<int64_t> tokens;
  for (size_t i = 0; i < memories.size(); ++i) {
    if (memories[i].tokens <= 0) {
      return InvalidArgumentError(
          fmt::format("passage {}: memory of {} tokens", i, memories[i].tokens));
    }
    tokens.push_back(memories[i].tokens);
  }
  auto fill = [&](size_t i, float* dst) { return decoder.Decode(memories[i], d, dst); };
  return LiveEncodeImpl(pool, question_ids, tokens, fill, out, scratch, check);
}

StatusOr<GenerationResult> LumenModel::Answer(const ThreadPool& pool,
                                              const std::vector<int>& question_ids,
                                              const std::vector<MemoryVectors>& memories,
                                              const T5GenerationOptions& options,
                                              LumenScratch* scratch) const {
  LumenScratch local;
  if (scratch == nullptr) scratch = &local;
  LiveEncoding enc;
  RETURN_IF_ERROR(LiveEncode(pool, question_ids, memories, &enc, scratch));
  return T5Generate(*model_, pool, enc.h.data(), enc.offsets.back(), options, &scratch->decoder);
}

StatusOr<GenerationResult> LumenModel::Answer(const ThreadPool& pool,
                                              const std::vector<int>& question_ids,
                                              const std::vector<EncodedMemory>& memories,
                                              const MemoryDecoder& decoder,
                                              const T5GenerationOptions& options,
                                              LumenScratch* scratch) const {
  LumenScratch local;
  if (scratch == nullptr) scratch = &local;
  LiveEncoding enc;
  RETURN_IF_ERROR(LiveEncode(pool, question_ids, memories, decoder, &enc, scratch));
  return T5Generate(*model_, pool, enc.h.data(), enc.offsets.back(), options, &scratch->decoder);
}

Status LumenModel::FidEncode(const ThreadPool& pool, const std::vector<int>& question_ids,
                             const std::vector<std::vector<int>>& passages, LiveEncoding* out,
                             LumenScratch* scratch) const {
  LumenScratch local;
  if (scratch == nullptr) scratch = &local;
  const int64_t d = model_->config().d_model;
  const int64_t q = static_cast<int64_t>(question_ids.size());
  if (q == 0) return InvalidArgumentError("FiD: empty question");
  if (passages.empty()) return InvalidArgumentError("FiD: no passages");
  out->offsets.assign(1, 0);
  for (const auto& p : passages) {
    out->offsets.push_back(out->offsets.back() + q + static_cast<int64_t>(p.size()));
  }
  out->h.resize(static_cast<size_t>(out->offsets.back() * d));
  for (size_t i = 0; i < passages.size(); ++i) {
    float* rows = out->h.data() + out->offsets[i] * d;
    RETURN_IF_ERROR(model_->Embed(question_ids.data(), q, rows).WithContext("question"));
    Status s =
        model_->Embed(passages[i].data(), static_cast<int64_t>(passages[i].size()), rows + q * d);
    if (!s.ok()) return s.WithContext(fmt::format("passage {}", i));
  }
  const int L = model_->config().num_layers;
  model_->EncoderLayers(pool, 0, L, out->offsets, out->h.data(), &scratch->encoder);
  model_->EncoderFinalNorm(pool, out->h.data(), out->offsets.back());
  return Status::Ok();
}

}  // namespace memoria

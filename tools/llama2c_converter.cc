#include "tools/llama2c_converter.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"
#include "engine/tokenizer.h"

namespace memoria {
namespace {

// llama2.c's export.py "version 1/2" files start with this magic ("ak42" little endian).
constexpr uint32_t kVersionedMagic = 0x616b3432;
// Generous bounds that keep every size product far from int64 overflow (largest LLaMA: dim
// 8192, hidden 28672, vocab 128256, 80 layers).
constexpr int kMaxDimension = 1 << 20;

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT) return NotFoundError(message);
  return InternalError(message);
}

// A read-only mapping of a whole file.
class MappedFile {
 public:
  ~MappedFile() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  Status Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("cannot open", path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("cannot stat", path, err);
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* map = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      int err = errno;
      ::close(fd);
      if (map == MAP_FAILED) return ErrnoStatus("cannot mmap", path, err);
      data_ = map;
    } else {
      ::close(fd);
    }
    return Status::Ok();
  }
  const unsigned char* bytes() const { return static_cast<const unsigned char*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

std::string HeaderString(const int32_t h[7]) {
  return "dim " + std::to_string(h[0]) + ", hidden_dim " + std::to_string(h[1]) + ", n_layers " +
         std::to_string(h[2]) + ", n_heads " + std::to_string(h[3]) + ", n_kv_heads " +
         std::to_string(h[4]) + ", vocab_size " + std::to_string(h[5]) + ", seq_len " +
         std::to_string(h[6]);
}

StatusOr<Llama2cConfig> ParseHeader(const std::string& path, const unsigned char* bytes,
                                    size_t size) {
  if (size < 28) {
    return DataLossError(path + " is " + std::to_string(size) +
                         " bytes, shorter than the 28-byte llama2.c header");
  }
  uint32_t magic;
  std::memcpy(&magic, bytes, 4);
  if (magic == kVersionedMagic) {
    int32_t version = 0;
    if (size >= 8) std::memcpy(&version, bytes + 4, 4);
    return UnimplementedError(path + " is a versioned llama2.c export (magic 'ak42', version " +
                              std::to_string(version) +
                              "); only the legacy format (export.py --version 0) is supported");
  }
  int32_t h[7];
  std::memcpy(h, bytes, sizeof(h));
  const std::string ctx = path + ": header (" + HeaderString(h) + ")";
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                          "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    const int64_t v = i == 5 ? std::abs(static_cast<int64_t>(h[i])) : h[i];
    if (v <= 0 || v > kMaxDimension) {
      return DataLossError(ctx + ": " + names[i] + " " + std::to_string(h[i]) +
                           " is outside [1, " + std::to_string(kMaxDimension) + "]");
    }
  }
  Llama2cConfig c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  c.vocab_size = std::abs(h[5]);
  c.seq_len = h[6];
  if (c.dim % c.n_heads != 0) {
    return DataLossError(ctx + ": dim " + std::to_string(c.dim) + " is not divisible by n_heads " +
                         std::to_string(c.n_heads));
  }
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0) {
    return DataLossError(ctx + ": n_heads " + std::to_string(c.n_heads) +
                         " is not a multiple of n_kv_heads " + std::to_string(c.n_kv_heads));
  }
  if (c.head_size() % 2 != 0) {
    return DataLossError(ctx + ": head size " + std::to_string(c.head_size()) +
                         " is odd; rotary embeddings need pairs");
  }
  const int64_t expected = c.ExpectedFileBytes();
  if (static_cast<int64_t>(size) != expected) {
    return DataLossError(ctx + ": file is " + std::to_string(size) + " bytes, the header implies " +
                         std::to_string(expected) + " (" +
                         (static_cast<int64_t>(size) < expected ? "truncated" : "trailing data") +
                         ")");
  }
  return c;
}

// Row permutation from llama2.c's interleaved RoPE pairs to Hugging Face's rotate_half halves,
// for a [n_heads * hs, dim] matrix.
std::vector<float> PermuteRotary(const float* w, int n_heads, int hs, int dim) {
  std::vector<float> out(static_cast<size_t>(n_heads) * hs * dim);
  const int half = hs / 2;
  for (int h = 0; h < n_heads; ++h) {
    for (int j = 0; j < 2; ++j) {
      for (int i = 0; i < half; ++i) {
        const size_t dst = static_cast<size_t>(h * hs + j * half + i) * dim;
        const size_t src = static_cast<size_t>(h * hs + 2 * i + j) * dim;
        std::memcpy(&out[dst], w + src, dim * sizeof(float));
      }
    }
  }
  return out;
}

// Writes text to path via a temporary file and rename.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return ErrnoStatus("cannot create", tmp, errno);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return ErrnoStatus("cannot write", tmp, errno);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return ErrnoStatus("cannot rename " + tmp + " to", path, err);
  }
  return Status::Ok();
}

// Protocol buffer wire format, just what ModelProto needs.
class ProtoWriter {
 public:
  void Varint(int field, uint64_t v) {
    Tag(field, 0);
    RawVarint(v);
  }
  // int32/enum fields: negative values are sign-extended to 64 bits (10 bytes), as protobuf does.
  void Int(int field, int64_t v) { Varint(field, static_cast<uint64_t>(v)); }
  void Bool(int field, bool v) { Varint(field, v ? 1 : 0); }
  void Float(int field, float v) {
    Tag(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    out_.append(b, 4);
  }
  void Bytes(int field, const std::string& v) {
    Tag(field, 2);
    RawVarint(v.size());
    out_ += v;
  }
  const std::string& str() const { return out_; }

 private:
  void Tag(int field, int wire_type) { RawVarint((static_cast<uint64_t>(field) << 3) | wire_type); }
  void RawVarint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// sentencepiece_model.proto field numbers and enum values.
namespace spm {
constexpr int kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3;
constexpr int kPiecePiece = 1, kPieceScore = 2, kPieceType = 3;
constexpr int kTypeNormal = 1, kTypeUnknown = 2, kTypeControl = 3, kTypeByte = 6;
constexpr int kTrainerModelType = 3, kTrainerVocabSize = 4, kTrainerSplitDigits = 25,
              kTrainerAllowWhitespaceOnlyPieces = 26, kTrainerByteFallback = 35,
              kTrainerUnkId = 40, kTrainerBosId = 41, kTrainerEosId = 42, kTrainerPadId = 43;
constexpr int kModelTypeBpe = 2;
constexpr int kNormName = 1, kNormAddDummyPrefix = 3, kNormRemoveExtraWhitespaces = 4,
              kNormEscapeWhitespaces = 5;
}  // namespace spm

// "<0xNN>" with two uppercase hex digits -> NN, else -1.
int ByteOfPiece(const std::string& s) {
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = s[k];
    if (c >= '0' && c <= '9') {
      v = v * 16 + (c - '0');
    } else if (c >= 'A' && c <= 'F') {
      v = v * 16 + (c - 'A' + 10);
    } else {
      return -1;
    }
  }
  return v;
}

}  // namespace

int64_t Llama2cConfig::ExpectedFileBytes() const {
  // 128-bit so that hostile headers (every size near kMaxDimension) cannot overflow; the result
  // saturates at INT64_MAX, which no real file matches.
  using Wide = __int128;
  const Wide hs = head_size(), kv_dim = static_cast<Wide>(n_kv_heads) * hs;
  const Wide L = n_layers, d = dim, h = hidden_dim, v = vocab_size;
  Wide floats = v * d;                 // token_embedding_table
  floats += L * d;                     // rms_att_weight
  floats += L * d * d;                 // wq
  floats += 2 * L * kv_dim * d;        // wk, wv
  floats += L * d * d;                 // wo
  floats += L * d;                     // rms_ffn_weight
  floats += 3 * L * h * d;             // w1, w2, w3
  floats += d;                         // rms_final_weight
  floats += static_cast<Wide>(seq_len) * hs;  // freq_cis_real + freq_cis_imag
  if (!shared_classifier) floats += v * d;    // wcls
  const Wide bytes = 28 + 4 * floats;
  return bytes > INT64_MAX ? INT64_MAX : static_cast<int64_t>(bytes);
}

StatusOr<Llama2cConfig> ReadLlama2cConfig(const std::string& checkpoint_path) {
  MappedFile file;
  RETURN_IF_ERROR(file.Open(checkpoint_path));
  return ParseHeader(checkpoint_path, file.bytes(), file.size());
}

StatusOr<std::string> BuildSentencePieceModelFromLlama2c(const std::string& tokenizer_bin_path,
                                                         int vocab_size) {
  std::ifstream in(tokenizer_bin_path, std::ios::binary);
  if (!in) return ErrnoStatus("cannot open", tokenizer_bin_path, errno);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();
  const std::string& path = tokenizer_bin_path;
  if (vocab_size < 3) {
    return InvalidArgumentError("vocabulary of " + std::to_string(vocab_size) +
                                " tokens cannot hold <unk>, <s> and </s>");
  }
  if (data.size() < 4) {
    return DataLossError(path + " is " + std::to_string(data.size()) +
                         " bytes, too short for max_token_length");
  }
  int32_t max_len;
  std::memcpy(&max_len, data.data(), 4);
  if (max_len <= 0) {
    return DataLossError(path + ": max_token_length " + std::to_string(max_len) +
                         " must be positive");
  }

  const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
  struct Piece {
    std::string text;
    float score;
    int type;
  };
  std::vector<Piece> pieces;
  std::map<std::string, int> seen;
  int byte_pieces = 0;
  size_t pos = 4;
  for (int id = 0; id < vocab_size; ++id) {
    if (data.size() - pos < 8) {
      return DataLossError(path + ": ends at byte " + std::to_string(data.size()) + " in token " +
                           std::to_string(id) + " of " + std::to_string(vocab_size));
    }
    float score;
    int32_t len;
    std::memcpy(&score, data.data() + pos, 4);
    std::memcpy(&len, data.data() + pos + 4, 4);
    pos += 8;
    if (len < 0 || len > max_len) {
      return DataLossError(path + ": token " + std::to_string(id) + " has length " +
                           std::to_string(len) + ", outside [0, max_token_length " +
                           std::to_string(max_len) + "]");
    }
    if (data.size() - pos < static_cast<size_t>(len)) {
      return DataLossError(path + ": token " + std::to_string(id) + " needs " +
                           std::to_string(len) + " bytes at offset " + std::to_string(pos) +
                           ", file is " + std::to_string(data.size()) + " bytes");
    }
    if (!std::isfinite(score)) {
      return DataLossError(path + ": token " + std::to_string(id) + " has a non-finite score");
    }
    std::string raw = data.substr(pos, len);
    pos += len;

    Piece piece{"", score, spm::kTypeNormal};
    if (id == 0) {
      piece = {"<unk>", 0.0f, spm::kTypeUnknown};
    } else if (id == 1 || id == 2) {
      const std::string expected = id == 1 ? "<s>" : "</s>";
      if (raw != expected && raw != "\n" + expected + "\n") {
        return DataLossError(path + ": token " + std::to_string(id) + " is '" + raw +
                             "', expected " + expected + " (llama2.c vocabularies put <unk>, "
                             "<s>, </s> at ids 0, 1, 2)");
      }
      piece = {expected, 0.0f, spm::kTypeControl};
    } else if (ByteOfPiece(raw) >= 0) {
      piece = {raw, score, spm::kTypeByte};
      ++byte_pieces;
    } else {
      if (raw.empty()) return DataLossError(path + ": token " + std::to_string(id) + " is empty");
      for (char c : raw) {
        if (c == ' ') {
          piece.text += kSpace;
        } else {
          piece.text.push_back(c);
        }
      }
    }
    auto [it, inserted] = seen.emplace(piece.text, id);
    if (!inserted) {
      return DataLossError(path + ": tokens " + std::to_string(it->second) + " and " +
                           std::to_string(id) + " are both '" + raw + "'");
    }
    pieces.push_back(std::move(piece));
  }
  if (pos != data.size()) {
    return DataLossError(path + ": " + std::to_string(data.size() - pos) +
                         " bytes follow the " + std::to_string(vocab_size) +
                         " tokens the checkpoint's vocab_size calls for");
  }
  // SentencePiece accepts BYTE pieces only with byte fallback, which needs all 256 of them.
  const bool byte_fallback = byte_pieces == 256;
  if (!byte_fallback) {
    for (Piece& p : pieces) {
      if (p.type == spm::kTypeByte) p.type = spm::kTypeNormal;
    }
  }

  ProtoWriter model;
  for (const Piece& p : pieces) {
    ProtoWriter sp;
    sp.Bytes(spm::kPiecePiece, p.text);
    sp.Float(spm::kPieceScore, p.score);
    sp.Int(spm::kPieceType, p.type);
    model.Bytes(spm::kModelPieces, sp.str());
  }
  ProtoWriter trainer;
  trainer.Int(spm::kTrainerModelType, spm::kModelTypeBpe);
  trainer.Int(spm::kTrainerVocabSize, vocab_size);
  trainer.Bool(spm::kTrainerSplitDigits, true);
  trainer.Bool(spm::kTrainerAllowWhitespaceOnlyPieces, true);
  trainer.Bool(spm::kTrainerByteFallback, byte_fallback);
  trainer.Int(spm::kTrainerUnkId, 0);
  trainer.Int(spm::kTrainerBosId, 1);
  trainer.Int(spm::kTrainerEosId, 2);
  trainer.Int(spm::kTrainerPadId, -1);
  model.Bytes(spm::kModelTrainerSpec, trainer.str());
  ProtoWriter normalizer;
  normalizer.Bytes(spm::kNormName, "identity");
  normalizer.Bool(spm::kNormAddDummyPrefix, true);
  normalizer.Bool(spm::kNormRemoveExtraWhitespaces, false);
  normalizer.Bool(spm::kNormEscapeWhitespaces, true);
  model.Bytes(spm::kModelNormalizerSpec, normalizer.str());
  return model.str();
}

Status ConvertLlama2c(const std::string& checkpoint_path, const std::string& tokenizer_bin_path,
                      const std::string& out_dir) {
  MappedFile file;
  RETURN_IF_ERROR(file.Open(checkpoint_path));
  ASSIGN_OR_RETURN(const Llama2cConfig c, ParseHeader(checkpoint_path, file.bytes(), file.size()));

  // Build the tokenizer first: a bad tokenizer.bin should fail before anything is written.
  std::string tokenizer_proto;
  if (!tokenizer_bin_path.empty()) {
    ASSIGN_OR_RETURN(tokenizer_proto,
                     BuildSentencePieceModelFromLlama2c(tokenizer_bin_path, c.vocab_size));
  }

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return InternalError("cannot create directory " + out_dir + ": " + ec.message());

  const int64_t d = c.dim, hs = c.head_size(), kv_dim = static_cast<int64_t>(c.n_kv_heads) * hs;
  const int64_t hidden = c.hidden_dim, vocab = c.vocab_size, L = c.n_layers;
  // The header is 28 bytes, so the f32 arrays that follow are 4-byte aligned in the mapping.
  const float* p = reinterpret_cast<const float*>(file.bytes() + 28);
  auto take = [&p](int64_t n) {
    const float* start = p;
    p += n;
    return start;
  };
  const float* embed = take(vocab * d);
  const float* rms_att = take(L * d);
  const float* wq = take(L * d * d);
  const float* wk = take(L * kv_dim * d);
  const float* wv = take(L * kv_dim * d);
  const float* wo = take(L * d * d);
  const float* rms_ffn = take(L * d);
  const float* w1 = take(L * hidden * d);
  const float* w2 = take(L * d * hidden);
  const float* w3 = take(L * hidden * d);
  const float* rms_final = take(d);
  take(static_cast<int64_t>(c.seq_len) * hs);  // freq_cis_real, freq_cis_imag
  const float* wcls = c.shared_classifier ? nullptr : take(vocab * d);

  std::vector<std::vector<float>> permuted;  // owns the permuted q/k matrices
  permuted.reserve(2 * L);
  std::vector<TensorToWrite> tensors;
  tensors.push_back({"model.embed_tokens.weight", DType::kF32, {vocab, d}, embed});
  for (int64_t i = 0; i < L; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    permuted.push_back(PermuteRotary(wq + i * d * d, c.n_heads, static_cast<int>(hs), c.dim));
    const float* q = permuted.back().data();
    permuted.push_back(PermuteRotary(wk + i * kv_dim * d, c.n_kv_heads, static_cast<int>(hs), c.dim));
    const float* k = permuted.back().data();
    tensors.push_back({prefix + "input_layernorm.weight", DType::kF32, {d}, rms_att + i * d});
    tensors.push_back({prefix + "self_attn.q_proj.weight", DType::kF32, {d, d}, q});
    tensors.push_back({prefix + "self_attn.k_proj.weight", DType::kF32, {kv_dim, d}, k});
    tensors.push_back(
        {prefix + "self_attn.v_proj.weight", DType::kF32, {kv_dim, d}, wv + i * kv_dim * d});
    tensors.push_back({prefix + "self_attn.o_proj.weight", DType::kF32, {d, d}, wo + i * d * d});
    tensors.push_back(
        {prefix + "post_attention_layernorm.weight", DType::kF32, {d}, rms_ffn + i * d});
    tensors.push_back(
        {prefix + "mlp.gate_proj.weight", DType::kF32, {hidden, d}, w1 + i * hidden * d});
    tensors.push_back(
        {prefix + "mlp.up_proj.weight", DType::kF32, {hidden, d}, w3 + i * hidden * d});
    tensors.push_back(
        {prefix + "mlp.down_proj.weight", DType::kF32, {d, hidden}, w2 + i * d * hidden});
  }
  tensors.push_back({"model.norm.weight", DType::kF32, {d}, rms_final});
  if (wcls != nullptr) tensors.push_back({"lm_head.weight", DType::kF32, {vocab, d}, wcls});

  RETURN_IF_ERROR(WriteSafetensors(out_dir + "/model.safetensors", tensors,
                                   {{"format", "pt"}, {"source", "llama2.c"}}));

  nlohmann::ordered_json config;
  config["architectures"] = {"LlamaForCausalLM"};
  config["model_type"] = "llama";
  config["hidden_size"] = c.dim;
  config["intermediate_size"] = c.hidden_dim;
  config["num_hidden_layers"] = c.n_layers;
  config["num_attention_heads"] = c.n_heads;
  config["num_key_value_heads"] = c.n_kv_heads;
  config["vocab_size"] = c.vocab_size;
  config["max_position_embeddings"] = c.seq_len;
  config["hidden_act"] = "silu";
  config["rms_norm_eps"] = 1e-5;
  config["rope_theta"] = 10000.0;
  config["tie_word_embeddings"] = c.shared_classifier;
  config["bos_token_id"] = 1;
  config["eos_token_id"] = 2;
  config["torch_dtype"] = "float32";
  RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/config.json", config.dump(2) + "\n"));

  if (!tokenizer_proto.empty()) {
    const std::string model_path = out_dir + "/tokenizer.model";
    RETURN_IF_ERROR(WriteFileAtomically(model_path, tokenizer_proto));
    auto check = Tokenizer::Open(model_path);
    if (!check.ok()) {
      return InternalError("the rebuilt tokenizer does not load: " + check.status().ToString());
    }
  }
  return Status::Ok();
}

}  // namespace memoria

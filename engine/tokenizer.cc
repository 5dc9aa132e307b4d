#include "engine/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/utf8.h"
#include "engine/sentencepiece_charsmap.h"

namespace memoria {

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Open(const std::string& model_path) {
  std::error_code ec;
  if (!std::filesystem::exists(model_path, ec)) {
    return NotFoundError("tokenizer model " + model_path + " does not exist");
  }
  if (std::filesystem::is_directory(model_path, ec)) {
    return InvalidArgumentError("tokenizer model " + model_path +
                                " is a directory, expected a SentencePiece .model file");
  }
  std::ifstream in(model_path, std::ios::binary);
  if (!in) {
    return InvalidArgumentError("cannot read tokenizer model " + model_path + ": " +
                                std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  if (bytes.empty()) return DataLossError("tokenizer model " + model_path + " is empty");

  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  // libsentencepiece builds its piece trie with darts-clone, which throws on some malformed
  // models (e.g. an empty piece) instead of returning an error status. (Only the four
  // sentencepiece functions that server/sentencepiece_isolation.cc forwards may be called here,
  // so the Status stays inside the try block instead of being assigned to.)
  try {
    const auto status = tokenizer->sp_->LoadFromSerializedProto(bytes);
    if (!status.ok()) {
      return DataLossError("tokenizer model " + model_path + " (" +
                           std::to_string(bytes.size()) +
                           " bytes) is not a valid SentencePiece model: " + status.ToString());
    }
  } catch (const std::exception& e) {
    return DataLossError("tokenizer model " + model_path + " (" + std::to_string(bytes.size()) +
                         " bytes) is not a valid SentencePiece model: " + e.what());
  }
  if (tokenizer->sp_->GetPieceSize() <= 0) {
    return DataLossError("tokenizer model " + model_path + " has no pieces");
  }
  // libsentencepiece loads normalization tables it then walks without bounds checks.
  RETURN_IF_ERROR(CheckSentencePieceCharsMaps(bytes).WithContext("tokenizer model " + model_path));
  return tokenizer;
}

std::vector<int> Tokenizer::Encode(const std::string& text, bool add_bos, bool add_eos) const {
  std::vector<int> ids;
  // Encoding a loaded model fails only on internal errors; the result is then empty.
  sp_->Encode(text, &ids).IgnoreError();
  if (add_bos && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
  if (add_eos && eos_id() >= 0) ids.push_back(eos_id());
  return ids;
}

namespace {

Status CheckIds(const std::vector<int>& ids, size_t begin, size_t end, int vocab_size) {
  for (size_t i = begin; i < end; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return InvalidArgumentError("token id " + std::to_string(ids[i]) + " at position " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(vocab_size) + ")");
    }
  }
  return Status::Ok();
}

// The byte value of a byte-fallback piece "<0xNN>".
int PieceByte(const std::string& piece) {
  if (piece.size() != 6) return -1;
  return static_cast<int>(std::strtol(piece.substr(3, 2).c_str(), nullptr, 16));
}

}  // namespace

StatusOr<std::string> Tokenizer::Decode(const std::vector<int>& ids) const {
  RETURN_IF_ERROR(CheckIds(ids, 0, ids.size(), vocab_size()));
  std::string text;
  const auto status = sp_->Decode(ids, &text);
  if (!status.ok()) return InternalError("sentencepiece decode failed: " + status.ToString());
  return text;
}

StatusOr<std::string> Tokenizer::DecodeIncrement(const std::vector<int>& previous, int id) const {
  const int n_vocab = vocab_size();
  if (id < 0 || id >= n_vocab) {
    return InvalidArgumentError("token id " + std::to_string(id) +
                                " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
  }
  // Decode only a short window: from the last ordinary piece before the trailing byte pieces.
  // An ordinary piece starts on a character boundary, and starting both decodes at the same
  // piece gives both the same leading-space treatment, so the difference of the two decodes is
  // what the id adds to the full text. Byte pieces before it are complete characters or garbage.
  size_t start = previous.size();
  while (start > 0 && previous[start - 1] >= 0 && previous[start - 1] < n_vocab &&
         sp_->IsByte(previous[start - 1])) {
    --start;
  }
  while (start > 0) {
    --start;
    const int p = previous[start];
    if (p >= 0 && p < n_vocab && !sp_->IsByte(p) && !sp_->IsControl(p) && !sp_->IsUnknown(p)) {
      break;
    }
  }
  RETURN_IF_ERROR(CheckIds(previous, start, previous.size(), n_vocab));
  std::vector<int> window(previous.begin() + start, previous.end());

  // Trailing byte pieces that begin a UTF-8 character but do not complete it are held back
  // until the piece that completes it arrives; then the whole character is emitted at once.
  auto stable_end = [&](const std::vector<int>& ids) -> size_t {
    size_t run = ids.size();
    while (run > 0 && sp_->IsByte(ids[run - 1])) --run;
    for (size_t p = ids.size(); p > run; --p) {
      const auto b = static_cast<unsigned char>(PieceByte(sp_->IdToPiece(ids[p - 1])));
      if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
      const size_t have = ids.size() - (p - 1);
      return have < static_cast<size_t>(Utf8SequenceLength(b)) ? p - 1 : ids.size();
    }
    return ids.size();
  };

  std::vector<int> extended = window;
  extended.push_back(id);
  std::string before, after;
  auto s1 = sp_->Decode(std::vector<int>(window.begin(), window.begin() + stable_end(window)),
                        &before);
  auto s2 = sp_->Decode(
      std::vector<int>(extended.begin(), extended.begin() + stable_end(extended)), &after);
  if (!s1.ok() || !s2.ok()) {
    return InternalError("sentencepiece decode failed: " + (s1.ok() ? s2 : s1).ToString());
  }
  if (after.compare(0, before.size(), before) != 0) {
    // Not expected for SentencePiece models; answer with what differs rather than fail.
    size_t common = 0;
    while (common < before.size() && common < after.size() && before[common] == after[common]) {
      ++common;
    }
    return after.substr(common);
  }
  return after.substr(before.size());
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::pad_id() const { return sp_->pad_id(); }

std::string Tokenizer::IdToPiece(int id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return sp_->IdToPiece(id);
}

}  // namespace memoria

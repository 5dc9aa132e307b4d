// SentencePiece tokenizer (LLaMA-2 tokenizer.model, T5 spiece.model, converted llama2.c vocabs).
//
// Encoding follows SentencePiece exactly (byte fallback for unknown characters, the model's own
// normalisation and dummy-prefix rules); BOS/EOS are added only when asked. For the LLaMA-2
// model this reproduces llama.cpp's tokenizer test vectors (ids without BOS, the text encoded
// as given: SentencePiece adds the leading "▁" itself).
//
// Thread-safety: immutable after Open; all methods may be called concurrently.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace memoria {

class Tokenizer {
 public:
  // NOT_FOUND if missing; DATA_LOSS if the file is empty or not a valid SentencePiece model
  // (normalization tables included: engine/sentencepiece_charsmap.h);
  // INVALID_ARGUMENT for a directory.
  static StatusOr<std::unique_ptr<Tokenizer>> Open(const std::string& model_path);
  ~Tokenizer();

  std::vector<int> Encode(const std::string& text, bool add_bos, bool add_eos) const;
  // Decodes ids to text (control tokens such as BOS/EOS produce no text). Ids outside
  // [0, vocab_size) are an INVALID_ARGUMENT naming the id and the vocabulary size.
  StatusOr<std::string> Decode(const std::vector<int>& ids) const;
  // Streaming: the text that `id` adds after `previous` ids (handles the leading-space rule and
  // multi-byte characters split over byte-fallback pieces by decoding the suffix).
  // Byte pieces that start a UTF-8 character without completing it yield "" and the whole
  // character comes out with the piece that completes it, so every increment is valid UTF-8 and
  // the increments of ids[0..n) concatenate to Decode(ids) (for ids that do not end inside a
  // character). Costs O(a few pieces): only the tail of `previous` back to its last ordinary
  // piece is decoded, and only those ids are range-checked (INVALID_ARGUMENT as for Decode).
  StatusOr<std::string> DecodeIncrement(const std::vector<int>& previous, int id) const;

  int vocab_size() const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  int pad_id() const;
  // The piece text ("▁Hello", "<0x0A>", "<s>"); "" for ids outside the vocabulary.
  std::string IdToPiece(int id) const;

 private:
  Tokenizer();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace memoria

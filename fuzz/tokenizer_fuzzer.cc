// SentencePiece model files from arbitrary bytes (engine/tokenizer.h): the server and the CLI
// load the model a model directory ships. Open must turn a malformed model into DATA_LOSS; a
// model that loads must encode text to ids inside its vocabulary that decode again, and
// out-of-range ids must be INVALID_ARGUMENT. The parsing itself is Debian's libsentencepiece.
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "fuzz/fuzz_target.h"

MEMORIA_FUZZ_TARGET(Tokenizer) {
  const MemFile file(data, size);
  auto opened = Tokenizer::Open(file.path());
  if (!opened.ok()) {
    FUZZ_CHECK(opened.status().code() == StatusCode::kDataLoss);
    return 0;
  }
  const Tokenizer& tokenizer = **opened;
  const int vocab = tokenizer.vocab_size();
  FUZZ_CHECK(vocab > 0);
  for (const char* text : {"Hello world", " the cat sat\non the mat\t12.5%", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac",
                           ""}) {
    const std::vector<int> ids = tokenizer.Encode(text, /*add_bos=*/true, /*add_eos=*/true);
    for (int id : ids) FUZZ_CHECK(id >= 0 && id < vocab);
    auto decoded = tokenizer.Decode(ids);
    FUZZ_CHECK(decoded.ok());
    std::vector<int> previous;
    for (int id : ids) {
      auto piece = tokenizer.DecodeIncrement(previous, id);
      FUZZ_CHECK(piece.ok());
      previous.push_back(id);
    }
    for (int id : ids) (void)tokenizer.IdToPiece(id);
  }
  FUZZ_CHECK(tokenizer.Decode({vocab}).status().code() == StatusCode::kInvalidArgument);
  FUZZ_CHECK(tokenizer.DecodeIncrement({}, -1).status().code() == StatusCode::kInvalidArgument);
  (void)tokenizer.IdToPiece(vocab);
  return 0;
}

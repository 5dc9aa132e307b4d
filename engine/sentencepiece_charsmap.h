// Checks the normalization tables of a serialized SentencePiece model before libsentencepiece
// uses them. Its Normalizer walks a model's precompiled_charsmap (a darts-clone double-array trie
// followed by the replacement strings) without bounds checks, so a malformed table in a model
// file crashes Encode (found by fuzz/tokenizer_fuzzer.cc). Tokenizer::Open refuses such models.
//
// Formats (sentencepiece_model.proto, normalizer.cc, darts.h):
//   ModelProto           field 3 normalizer_spec, field 5 denormalizer_spec (messages; repeated
//                        occurrences merge, a later precompiled_charsmap wins)
//   NormalizerSpec       field 2 precompiled_charsmap (bytes); empty = no normalization
//   precompiled_charsmap /// Layout: u32 trie_bytes (LE) | trie_bytes of u32 trie units |
//                        ///         replacement strings, each NUL-terminated
//   trie unit            has_leaf = bit 8; value = bits 0-30; label = bits 31 and 0-7;
//                        offset = (unit >> 10) << ((unit & (1 << 9)) >> 6)
// A trie lookup starts at unit 0, moves to base = node ^ offset, reads unit base ^ c for the next
// input byte c (any of 256), accepts it when its label is c, and for a child with has_leaf reads
// the value at the child's own base: an offset into the replacement strings.
#pragma once

#include <string>

#include "base/status.h"

namespace memoria {

// OK when the model bytes carry no charsmap or only charsmaps whose every lookup stays inside the
// table: the trie has at least one unit, every block of 256 units a reachable node can read lies
// inside it, every value it can return is an offset into the strings, and the strings end with a
// NUL. DATA_LOSS naming the table and the first violation (with the numbers) otherwise, and for
// bytes that are not a well-formed protobuf message where the tables are.
Status CheckSentencePieceCharsMaps(const std::string& model_bytes);

}  // namespace memoria

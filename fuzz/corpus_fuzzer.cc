// Passage corpora from arbitrary bytes (tools/corpus_reader.h), as `memoria build-store` reads
// them: the first input byte picks JSONL or SQuAD, the rest is the file. Every passage read must
// have a non-empty, unique id; malformed files are INVALID_ARGUMENT.
#include <set>
#include <string>

#include "fuzz/fuzz_target.h"
#include "tools/corpus_reader.h"

MEMORIA_FUZZ_TARGET(Corpus) {
  if (size == 0) return 0;
  const CorpusFormat format = (data[0] & 1) ? CorpusFormat::kSquad : CorpusFormat::kJsonl;
  const int64_t limit = (data[0] >> 1) & 3;  // 0 = all, else at most 1..3 passages
  const MemFile file(data + 1, size - 1);
  auto passages = ReadCorpus(file.path(), format, limit);
  if (!passages.ok()) {
    FUZZ_CHECK(passages.status().code() == StatusCode::kInvalidArgument);
    return 0;
  }
  if (limit > 0) FUZZ_CHECK(static_cast<int64_t>(passages->size()) <= limit);
  std::set<std::string> ids;
  for (const CorpusPassage& p : *passages) {
    FUZZ_CHECK(!p.id.empty());
    FUZZ_CHECK(ids.insert(p.id).second);
  }
  return 0;
}

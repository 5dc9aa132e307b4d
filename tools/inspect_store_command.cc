// `memoria inspect-store`: what a passage store holds and what it costs per token.
//
// Prints the store identity (model fingerprint, layer split), the codec and its parameters,
// counts, bytes per token with the codec's formula, the compression ratio against fp32 and bf16
// memory, and bytes on disk. --verify reads every value and checks its frame, CRC32C and codec
// size (and RocksDB's block checksums); corrupt values are listed and the exit code is 1.
// --rebuild-index opens the store read-write and rebuilds its BM25 retrieval index from the text
// records (the repair for index records that fail verification) before inspecting it.
#include <cstdio>
#include <string>

#include "storage/passage_store.h"
#include "tools/commands.h"

namespace memoria {
namespace {

std::string Formula(const CodecSpec& spec) {
  switch (spec.id) {
    case CodecId::kNone:
      return spec.none_dtype == "bf16" ? "2 * d" : "4 * d";
    case CodecId::kPq:
      return "g * ceil(log2 C) / 8 = " + std::to_string(spec.pq_subspaces) + " * " + std::to_string(spec.pq_bits) +
             " / 8";
    case CodecId::kBtr:
      return "ceil(d / 8) + scale bytes = " + std::to_string((spec.dim + 7) / 8) + " + " +
             std::to_string(spec.btr_scale_bytes) +
             (spec.merges_tokens() ? " per kept token; a merged passage of n tokens keeps m and takes "
                                     "8 + 4 n + m * that"
                                   : "");
  }
  return "?";
}

Status RunInspectStore(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"store", "verify", "rebuild-index"}));
  ASSIGN_OR_RETURN(const std::string dir, args.Require("store"));
  std::unique_ptr<PassageStore> store;
  if (args.Has("rebuild-index")) {
    RETURN_IF_ERROR(PassageStore::Open(PassageStoreOptions{}, dir, /*expected=*/nullptr, &store));
    int64_t skipped = 0;
    RETURN_IF_ERROR(store->RebuildRetrievalIndex(&skipped));
    std::printf("rebuilt the retrieval index: %lld passages indexed, %lld corrupt text records left out\n",
                static_cast<long long>(store->passage_count()), static_cast<long long>(skipped));
    store.reset();
  }
  PassageStoreOptions options;
  options.read_only = true;
  RETURN_IF_ERROR(PassageStore::Open(options, dir, /*expected=*/nullptr, &store));
  const bool verify = args.Has("verify");
  ASSIGN_OR_RETURN(const StoreStats stats, store->Scan(verify));

  const StoreIdentity& id = store->identity();
  const CodecSpec& spec = id.codec;
  const int64_t bpt = spec.BytesPerToken();
  std::printf("store:              %s\n", dir.c_str());
  std::printf("format version:     %d\n", static_cast<int>(kStoreFormatVersion));
  std::printf("model fingerprint:  0x%016llx\n", static_cast<unsigned long long>(id.model_fingerprint));
  std::printf("layer split:        %d\n", id.layer_split);
  std::printf("codec:              %s\n", spec.ToString().c_str());
  std::printf("codec parameters:   %s\n", spec.ToJson().c_str());
  std::printf("codec state bytes:  %zu\n", store->codec().SerializeState().size());
  std::printf("passages:           %lld (memory records %lld)\n", static_cast<long long>(stats.passages),
              static_cast<long long>(stats.memories));
  std::printf("tokens:             %lld\n", static_cast<long long>(stats.tokens));
  if (stats.memories > 0) {
    std::printf("tokens per passage: %.1f\n", static_cast<double>(stats.tokens) / stats.memories);
  }
  std::printf("bytes per token:    %lld  (%s)\n", static_cast<long long>(bpt), Formula(spec).c_str());
  if (stats.tokens > 0) {
    std::printf("measured:           %.3f code bytes per token, %.3f with value framing\n",
                static_cast<double>(stats.code_bytes) / stats.tokens,
                static_cast<double>(stats.memory_value_bytes) / stats.tokens);
  }
  const double fp32 = 4.0 * spec.dim, bf16 = 2.0 * spec.dim;
  // Merged btr passages have no fixed size per token: the ratio is the measured one.
  const bool measured = spec.merges_tokens() && stats.tokens > 0;
  const double measured_bytes = measured ? static_cast<double>(stats.code_bytes) / stats.tokens : 0.0;
  const double vs_fp32 = measured ? fp32 / measured_bytes : spec.CompressionRatio(4);
  const double vs_bf16 = measured ? bf16 / measured_bytes : spec.CompressionRatio(2);
  std::printf("compression ratio:  %.2fx vs fp32 (%.0f B/token), %.2fx vs bf16 (%.0f B/token)%s\n",
              vs_fp32, fp32, vs_bf16, bf16, measured ? ", measured" : "");
  std::printf("code bytes:         %lld\n", static_cast<long long>(stats.code_bytes));
  for (int c = 1; c < store->num_codecs(); ++c) {
    const CodecSpec& extra = store->codec(c).spec();
    const int64_t extra_bpt = extra.BytesPerToken();
    std::printf("extra codec %d:      %s, %lld bytes per token (%s), %.2fx vs fp32, %.2fx vs bf16, %lld code bytes\n",
                c, extra.ToString().c_str(), static_cast<long long>(extra_bpt), Formula(extra).c_str(),
                extra.CompressionRatio(4), extra.CompressionRatio(2),
                static_cast<long long>(stats.codecs[c].code_bytes));
  }
  std::printf("memory value bytes: %lld, text value bytes: %lld\n", static_cast<long long>(stats.memory_value_bytes),
              static_cast<long long>(stats.text_value_bytes));
  if (store->passage_count() >= 0) {
    std::printf("retrieval index:    bm25, %lld passages, %lld records\n",
                static_cast<long long>(store->passage_count()), static_cast<long long>(stats.index_records));
  } else {
    std::printf("retrieval index:    none (a store from before the index; a read-write open builds it)\n");
  }
  std::printf("on disk (SST+blob): %lld bytes\n", static_cast<long long>(stats.sst_bytes));
  if (!verify) return Status::Ok();
  if (stats.corrupt == 0) {
    int64_t memories = 0;
    for (const auto& c : stats.codecs) memories += c.memories;
    std::printf("verify:             OK (%lld values checked)\n",
                static_cast<long long>(stats.passages + memories + stats.index_records));
    return Status::Ok();
  }
  std::printf("verify:             %lld corrupt value(s)\n", static_cast<long long>(stats.corrupt));
  for (const auto& e : stats.corrupt_examples) std::printf("  %s\n", e.c_str());
  return DataLossError(std::to_string(stats.corrupt) + " corrupt value(s) in " + dir);
}

const bool registered = RegisterCommand({
    "inspect-store",
    "print a passage store's identity, codec, counts, bytes per token and compression ratio",
    "--store DIR      the passage store (opened read-only)\n"
    "--verify         read every value and check checksums and sizes; exit 1 if any is corrupt\n"
    "--rebuild-index  first rebuild the BM25 retrieval index from the text records (read-write)",
    RunInspectStore,
});

}  // namespace
}  // namespace memoria

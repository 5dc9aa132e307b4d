#include "storage/passage_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "storage/bm25_postings.h"
#include "storage/rocks_status.h"

namespace memoria {
namespace {

using Json = nlohmann::json;

// Column family order in handles_.
enum Cf { kDefault = 0, kMeta = 1, kCodec = 2, kPassages = 3, kMemory = 4, kBm25 = 5 };
constexpr int kNumCfs = 6;
const char* const kCfNames[kNumCfs] = {"default", "meta", "codec", "passages", "memory", "bm25"};
// Passages per WriteBatch when the retrieval index is rebuilt: bounded memory for any store size.
constexpr size_t kRebuildBatchPassages = 512;

constexpr size_t kStateChunkBytes = 4u << 20;
constexpr size_t kMemoryHeaderBytes = 1 + 4 + 4 + 4;

std::string PassageName(const std::string& id) { return "passage '" + id + "'"; }

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016" PRIx64, v);
  return buf;
}

// Codec state keys: "state/..." for the primary codec, "codec<i>/state/..." for extra codec i.
std::string StatePrefix(int codec_index) {
  return codec_index == 0 ? "" : "codec" + std::to_string(codec_index) + "/";
}
std::string StateChunkKey(int codec_index, uint32_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "state/%08u", i);
  return StatePrefix(codec_index) + buf;
}
std::string StateCountKey(int codec_index) { return StatePrefix(codec_index) + "state/count"; }
// The memory column family of extra codec i (>= 1); the primary codec's is "memory".
std::string ExtraMemoryCfName(int codec_index) { return "memory." + std::to_string(codec_index); }

}  // namespace

// Parses and validates a memory value against the store's codec.
Status ParseMemoryValue(const std::string& id, const char* value, size_t size, const Codec& codec,
                        PassageCodes* out) {
  const std::string what = PassageName(id) + " memory";
  const char* payload;
  size_t len;
  RETURN_IF_ERROR(Unframe(value, size, RecordKind::kMemory, what, &payload, &len));
  PayloadReader r(payload, len);
  uint8_t codec_id;
  uint32_t num_tokens, dim, code_bytes;
  if (!r.U8(&codec_id) || !r.U32(&num_tokens) || !r.U32(&dim) || !r.U32(&code_bytes)) {
    return DataLossError(what + ": payload of " + std::to_string(len) + " bytes is shorter than its " +
                         std::to_string(kMemoryHeaderBytes) + "-byte header");
  }
  if (codec_id != static_cast<uint8_t>(codec.spec().id)) {
    return DataLossError(what + ": value has codec id " + std::to_string(codec_id) + " (" +
                         CodecIdName(static_cast<CodecId>(codec_id)) + "), the store's codec is " +
                         codec.spec().ToString());
  }
  if (dim != codec.dim()) {
    return DataLossError(what + ": value has dim " + std::to_string(dim) + ", the store's codec is " +
                         codec.spec().ToString());
  }
  // Merged btr blobs vary in size; DecodePassage checks their inside.
  const int64_t want = codec.fixed_size_blobs() ? codec.code_size(num_tokens) : int64_t{code_bytes};
  if (code_bytes != want || r.remaining() != code_bytes) {
    return DataLossError(what + ": " + std::to_string(num_tokens) + " tokens need " + std::to_string(want) +
                         " code bytes (" + codec.spec().ToString() + "), value declares " +
                         std::to_string(code_bytes) + " and holds " + std::to_string(r.remaining()));
  }
  out->num_tokens = num_tokens;
  out->codes.assign(r.here(), code_bytes);
  return Status::Ok();
}

Status ParsePassageValue(const std::string& id, const char* value, size_t size, PassageText* out) {
  const std::string what = PassageName(id) + " text";
  const char* payload;
  size_t len;
  RETURN_IF_ERROR(Unframe(value, size, RecordKind::kPassage, what, &payload, &len));
  PayloadReader r(payload, len);
  uint32_t title_len, text_len, n;
  if (!r.U32(&title_len) || !r.Bytes(title_len, &out->title) || !r.U32(&text_len) ||
      !r.Bytes(text_len, &out->text) || !r.U32(&n) || r.remaining() != uint64_t{n} * 4) {
    return DataLossError(what + ": malformed payload of " + std::to_string(len) + " bytes");
  }
  out->token_ids.resize(n);
  // memcpy wants valid pointers even for 0 bytes, and an empty vector's data() may be null.
  if (n > 0) std::memcpy(out->token_ids.data(), r.here(), uint64_t{n} * 4);
  return Status::Ok();
}

namespace {

std::string IdentityJson(const StoreIdentity& id) {
  Json j;
  j["format_version"] = kStoreFormatVersion;
  j["model_fingerprint"] = id.model_fingerprint;
  j["layer_split"] = id.layer_split;
  j["codec"] = Json::parse(id.codec.ToJson());
  if (!id.extra_codecs.empty()) {
    j["extra_codecs"] = Json::array();
    for (const CodecSpec& spec : id.extra_codecs) j["extra_codecs"].push_back(Json::parse(spec.ToJson()));
  }
  return j.dump();
}

}  // namespace

std::string EncodeMemoryValue(CodecId codec, int64_t num_tokens, int64_t dim, const std::string& codes,
                              uint8_t version) {
  std::string payload;
  payload.reserve(kMemoryHeaderBytes + codes.size());
  payload.push_back(static_cast<char>(codec));
  PutU32(&payload, static_cast<uint32_t>(num_tokens));
  PutU32(&payload, static_cast<uint32_t>(dim));
  PutU32(&payload, static_cast<uint32_t>(codes.size()));
  payload.append(codes);
  return Frame(RecordKind::kMemory, payload, version);
}

std::string StoreIdentity::ToString() const {
  std::string s = "fingerprint " + Hex64(model_fingerprint) + ", layer split " + std::to_string(layer_split) +
                  ", codec " + codec.ToString();
  for (size_t i = 0; i < extra_codecs.size(); ++i) {
    s += (i == 0 ? " (also " : ", ") + extra_codecs[i].ToString();
  }
  return extra_codecs.empty() ? s : s + ")";
}

struct PassageStore::RocksOpenParams {
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
};

PassageStore::~PassageStore() { CloseDb(); }

void PassageStore::CloseDb() {
  if (db_ != nullptr) {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
    delete db_;
    db_ = nullptr;
  }
  handles_.clear();
}

Status PassageStore::CheckOpen() const {
  if (db_ != nullptr) return Status::Ok();
  return UnavailableError("passage store " + dir_ + " is closed: reopening it after a failed write failed (" +
                          reopen_error_ + "); the next write retries");
}

Status PassageStore::ReopenIfNeeded() {
  if (!reopen_needed_.load()) return Status::Ok();
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (!reopen_needed_.load()) return Status::Ok();  // another writer reopened it meanwhile
  reopen_attempts_.fetch_add(1);
  CloseDb();
  const rocksdb::Status s =
      rocksdb::DB::Open(open_params_->db_options, dir_, open_params_->cfs, &handles_, &db_);
  if (!s.ok()) {
    CloseDb();
    reopen_error_ = s.ToString();
    return FromRocks(s, "reopening passage store " + dir_ + " after a failed write");
  }
  reopen_error_.clear();
  reopen_needed_.store(false);
  return Status::Ok();
}

Status PassageStore::OpenDb(const PassageStoreOptions& options, const std::string& dir, bool create,
                            int extra_codecs, std::unique_ptr<PassageStore>* out) {
  std::unique_ptr<PassageStore> store(new PassageStore());
  store->options_ = options;
  store->dir_ = dir;

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = create;
  db_options.create_missing_column_families = create;
  db_options.paranoid_checks = true;
  db_options.max_background_jobs = 2;
  if (options.file_system != nullptr) {
    store->env_ = rocksdb::NewCompositeEnv(options.file_system);
    db_options.env = store->env_.get();
  }

  rocksdb::BlockBasedTableOptions table;
  if (options.block_cache_bytes == 0) {
    table.no_block_cache = true;
  } else {
    table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  }
  auto table_factory = std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::ColumnFamilyOptions plain_cf;
  plain_cf.table_factory = table_factory;
  // Codes are high-entropy (PQ ids, sign bits): block compression gains ~1.1x at a CPU cost on
  // every read, so it is off. Large values go to blob files (see the header).
  rocksdb::ColumnFamilyOptions memory_cf = plain_cf;
  memory_cf.compression = rocksdb::kNoCompression;
  memory_cf.enable_blob_files = options.enable_blob_files;
  memory_cf.min_blob_size = options.min_blob_size;
  memory_cf.blob_compression_type = rocksdb::kNoCompression;
  memory_cf.enable_blob_garbage_collection = true;  // reclaim space of overwritten/deleted passages
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (int i = 0; i < kNumCfs; ++i) cfs.emplace_back(kCfNames[i], i == kMemory ? memory_cf : plain_cf);

  if (!create) {
    std::error_code ec;  // a path the OS refuses (e.g. too long) is "no store", not an exception
    if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) {
      return NotFoundError("no passage store at " + dir);
    }
    std::vector<std::string> names;
    RETURN_IF_ERROR(FromRocks(rocksdb::DB::ListColumnFamilies(db_options, dir, &names), "listing " + dir));
    for (int i = 0; i < kBm25; ++i) {
      if (std::find(names.begin(), names.end(), kCfNames[i]) == names.end()) {
        return FailedPreconditionError(dir + " is a RocksDB database but not a passage store (no column family '" +
                                       std::string(kCfNames[i]) + "')");
      }
    }
    // A store made before the retrieval index existed: a read-write open adds the family and
    // Open builds the index; a read-only open goes without it.
    if (std::find(names.begin(), names.end(), kCfNames[kBm25]) == names.end()) {
      if (options.read_only) {
        cfs.pop_back();
        store->index_family_ = false;
      } else {
        db_options.create_missing_column_families = true;
      }
    }
    // Extra codecs' memory families are numbered from 1 without gaps (LoadIdentityAndCodec
    // checks the count against the identity).
    extra_codecs = 0;
    while (std::find(names.begin(), names.end(), ExtraMemoryCfName(extra_codecs + 1)) != names.end()) {
      ++extra_codecs;
    }
  }
  store->extra_memory_cf_begin_ = cfs.size();
  for (int i = 1; i <= extra_codecs; ++i) cfs.emplace_back(ExtraMemoryCfName(i), memory_cf);
  rocksdb::Status s;
  if (options.read_only) {
    s = rocksdb::DB::OpenForReadOnly(db_options, dir, cfs, &store->handles_, &store->db_);
  } else {
    s = rocksdb::DB::Open(db_options, dir, cfs, &store->handles_, &store->db_);
  }
  RETURN_IF_ERROR(FromRocks(s, "opening passage store " + dir));
  store->open_params_ = std::make_unique<RocksOpenParams>(RocksOpenParams{db_options, std::move(cfs)});
  *out = std::move(store);
  return Status::Ok();
}

Status PassageStore::WriteDurably(rocksdb::WriteBatch* batch) {
  if (options_.read_only) return FailedPreconditionError("passage store " + dir_ + " is open read-only");
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  wo.disableWAL = false;
  RETURN_IF_ERROR(CheckOpen());
  const rocksdb::Status s = db_->Write(wo, batch);
  // After a failed WAL append or sync RocksDB refuses all later writes of this open database.
  if (!s.ok()) reopen_needed_.store(true);
  return FromRocks(s, "writing to passage store " + dir_);
}

Status PassageStore::Create(const PassageStoreOptions& options, const std::string& dir,
                            const StoreIdentity& identity, const Codec& codec,
                            std::unique_ptr<PassageStore>* out) {
  return Create(options, dir, identity, std::vector<const Codec*>{&codec}, out);
}

Status PassageStore::Create(const PassageStoreOptions& options, const std::string& dir,
                            const StoreIdentity& identity, const std::vector<const Codec*>& codecs,
                            std::unique_ptr<PassageStore>* out) {
  if (codecs.empty() || codecs.size() != identity.extra_codecs.size() + 1) {
    return InvalidArgumentError(std::to_string(codecs.size()) + " codecs given for an identity of " +
                                std::to_string(identity.extra_codecs.size() + 1));
  }
  for (size_t i = 0; i < codecs.size(); ++i) {
    const Codec& codec = *codecs[i];
    const CodecSpec& want = i == 0 ? identity.codec : identity.extra_codecs[i - 1];
    if (codec.spec() != want) {
      return InvalidArgumentError("codec " + codec.spec().ToString() + " differs from the identity's codec " +
                                  want.ToString());
    }
    if (!codec.ready()) {
      return FailedPreconditionError("codec " + codec.spec().ToString() + " is not trained; train or import it first");
    }
    for (size_t j = 0; j < i; ++j) {
      if (codecs[j]->spec() == codec.spec()) {
        return InvalidArgumentError("codec " + codec.spec().ToString() + " is given twice");
      }
    }
  }
  if (options.read_only) return InvalidArgumentError("cannot create a store read-only");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::unique_ptr<PassageStore> store;
  RETURN_IF_ERROR(OpenDb(options, dir, /*create=*/true, static_cast<int>(codecs.size()) - 1, &store));
  std::string existing;
  const rocksdb::Status s = store->db_->Get(rocksdb::ReadOptions(), store->handles_[kMeta], "identity", &existing);
  if (s.ok()) return Status(StatusCode::kAlreadyExists, "a passage store already exists at " + dir);
  if (!s.IsNotFound()) return FromRocks(s, "reading " + dir);

  // Identity and codec states in one batch: a crash leaves either a complete store or none.
  rocksdb::WriteBatch batch;
  for (size_t c = 0; c < codecs.size(); ++c) {
    const int index = static_cast<int>(c);
    const std::string state = codecs[c]->SerializeState();
    const uint32_t chunks = static_cast<uint32_t>((state.size() + kStateChunkBytes - 1) / kStateChunkBytes);
    for (uint32_t i = 0; i < chunks; ++i) {
      const size_t begin = size_t{i} * kStateChunkBytes;
      const std::string chunk = state.substr(begin, std::min(kStateChunkBytes, state.size() - begin));
      RETURN_IF_ERROR(FromRocks(
          batch.Put(store->handles_[kCodec], StateChunkKey(index, i), Frame(RecordKind::kStateChunk, chunk)), "batch"));
    }
    std::string count;
    PutU32(&count, chunks);
    PutU64(&count, state.size());
    PutU32(&count, Crc32c(state.data(), state.size()));
    RETURN_IF_ERROR(FromRocks(
        batch.Put(store->handles_[kCodec], StateCountKey(index), Frame(RecordKind::kStateCount, count)), "batch"));
  }
  RETURN_IF_ERROR(FromRocks(batch.Put(store->handles_[kMeta], "identity", Frame(RecordKind::kIdentity, IdentityJson(identity))), "batch"));
  RETURN_IF_ERROR(PutBm25Totals(store->handles_[kBm25], Bm25Totals{}, &batch));
  const bool sync = store->options_.sync;
  store->options_.sync = true;  // creation is always durable
  RETURN_IF_ERROR(store->WriteDurably(&batch));
  store->options_.sync = sync;
  RETURN_IF_ERROR(store->LoadIdentityAndCodec(&identity));
  store->passages_.store(0);
  *out = std::move(store);
  return Status::Ok();
}

Status PassageStore::Open(const PassageStoreOptions& options, const std::string& dir,
                          const StoreIdentity* expected, std::unique_ptr<PassageStore>* out) {
  std::unique_ptr<PassageStore> store;
  RETURN_IF_ERROR(OpenDb(options, dir, /*create=*/false, /*extra_codecs=*/0, &store));
  RETURN_IF_ERROR(store->LoadIdentityAndCodec(expected));
  if (store->index_family_) {
    auto totals = ReadBm25Totals(store->db_, store->handles_[kBm25], nullptr);
    if (totals.ok()) {
      store->passages_.store(totals->docs);
    } else if (totals.status().code() != StatusCode::kNotFound) {
      return totals.status().WithContext("passage store " + dir);
    } else if (!options.read_only) {
      // No totals record: the family was just added, or a build was interrupted.
      RETURN_IF_ERROR(store->RebuildRetrievalIndex().WithContext("building the retrieval index of " + dir));
    }
  }
  *out = std::move(store);
  return Status::Ok();
}

Status PassageStore::LoadIdentityAndCodec(const StoreIdentity* expected) {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::string value;
  rocksdb::Status s = db_->Get(ro, handles_[kMeta], "identity", &value);
  if (s.IsNotFound()) return DataLossError(dir_ + ": passage store has no identity record");
  RETURN_IF_ERROR(FromRocks(s, dir_ + ": reading the identity"));
  const char* payload;
  size_t len;
  RETURN_IF_ERROR(Unframe(value.data(), value.size(), RecordKind::kIdentity, dir_ + ": identity", &payload, &len));
  const Json j = Json::parse(payload, payload + len, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return DataLossError(dir_ + ": identity is not a JSON object");
  StoreIdentity id;
  try {
    // get<>() of a JSON float out of the integer's range is undefined behaviour: integers only.
    if (!j.at("model_fingerprint").is_number_integer() || !j.at("layer_split").is_number_integer())
      return DataLossError(dir_ + ": identity " + std::string(payload, len) + ": fields are not integers");
    id.model_fingerprint = j.at("model_fingerprint").get<uint64_t>();
    id.layer_split = j.at("layer_split").get<int32_t>();
    ASSIGN_OR_RETURN(id.codec, CodecSpec::FromJson(j.at("codec").dump()));
    if (j.contains("extra_codecs")) {
      if (!j.at("extra_codecs").is_array()) return DataLossError(dir_ + ": identity: extra_codecs is not a list");
      for (const Json& spec : j.at("extra_codecs")) {
        ASSIGN_OR_RETURN(CodecSpec extra, CodecSpec::FromJson(spec.dump()));
        id.extra_codecs.push_back(extra);
      }
    }
  } catch (const std::exception& e) {
    return DataLossError(dir_ + ": identity " + std::string(payload, len) + ": " + e.what());
  }
  if (expected != nullptr &&
      (expected->model_fingerprint != id.model_fingerprint || expected->layer_split != id.layer_split ||
       expected->codec != id.codec)) {
    return FailedPreconditionError("passage store " + dir_ + " holds memory from " + id.ToString() +
                                   "; it was opened for " + expected->ToString() +
                                   " (memory from another model, split or codec cannot be reused)");
  }
  const size_t memory_families = handles_.size() - extra_memory_cf_begin_;
  if (memory_families != id.extra_codecs.size()) {
    return DataLossError(dir_ + ": identity names " + std::to_string(id.extra_codecs.size()) +
                         " extra codecs, the database has " + std::to_string(memory_families) +
                         " extra memory families");
  }
  identity_ = id;

  // Codec states.
  codecs_.clear();
  for (size_t c = 0; c <= id.extra_codecs.size(); ++c) {
    const CodecSpec& spec = c == 0 ? id.codec : id.extra_codecs[c - 1];
    ASSIGN_OR_RETURN(std::unique_ptr<Codec> codec, CreateCodec(spec));
    RETURN_IF_ERROR(LoadCodecState(static_cast<int>(c), codec.get()));
    codecs_.push_back(std::move(codec));
  }
  return Status::Ok();
}

Status PassageStore::LoadCodecState(int index, Codec* codec) {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  const std::string what = dir_ + ": codec " + codec->spec().ToString() + " state";
  std::string value;
  const char* payload;
  size_t len;
  rocksdb::Status s = db_->Get(ro, handles_[kCodec], StateCountKey(index), &value);
  if (s.IsNotFound()) return DataLossError(what + " record is missing");
  RETURN_IF_ERROR(FromRocks(s, "reading the " + what));
  RETURN_IF_ERROR(Unframe(value.data(), value.size(), RecordKind::kStateCount, what + " count", &payload, &len));
  PayloadReader r(payload, len);
  uint32_t chunks, crc;
  uint64_t total;
  if (!r.U32(&chunks) || !r.U64(&total) || !r.U32(&crc) || r.remaining() != 0) {
    return DataLossError(what + " count record is malformed");
  }
  std::string state;
  state.reserve(total);
  for (uint32_t i = 0; i < chunks; ++i) {
    s = db_->Get(ro, handles_[kCodec], StateChunkKey(index, i), &value);
    RETURN_IF_ERROR(FromRocks(s, what + " chunk " + std::to_string(i)));
    RETURN_IF_ERROR(Unframe(value.data(), value.size(), RecordKind::kStateChunk,
                            what + " chunk " + std::to_string(i), &payload, &len));
    state.append(payload, len);
  }
  if (state.size() != total || Crc32c(state.data(), state.size()) != crc) {
    return DataLossError(what + " is " + std::to_string(state.size()) + " bytes, expected " +
                         std::to_string(total) + " (or its checksum differs)");
  }
  return codec->LoadState(state).WithContext(what);
}

StatusOr<int> PassageStore::FindCodecByFlag(const std::string& flag) const {
  if (flag.empty()) return 0;
  auto spec = CodecSpec::Parse(flag, codec().dim());
  const int index = spec.ok() ? FindCodec(*spec) : -1;
  if (index >= 0) return index;
  std::string held;  // only for the error: requests naming a held codec do not build it
  for (int i = 0; i < num_codecs(); ++i) held += (i == 0 ? "" : ", ") + codecs_[i]->spec().ToFlag();
  if (!spec.ok()) {
    return InvalidArgumentError("codec '" + flag + "': " + spec.status().message() + " (the store holds " + held + ")");
  }
  return InvalidArgumentError("the store holds no memory in codec '" + flag + "' (" + spec->ToString() +
                              "); it holds " + held);
}

rocksdb::ColumnFamilyHandle* PassageStore::MemoryFamily(int codec_index) const {
  return codec_index == 0 ? handles_[kMemory] : handles_[extra_memory_cf_begin_ + codec_index - 1];
}

int PassageStore::FindCodec(const CodecSpec& spec) const {
  for (size_t i = 0; i < codecs_.size(); ++i) {
    if (codecs_[i]->spec() == spec) return static_cast<int>(i);
  }
  return -1;
}

Status PassageStore::Ingest(const ThreadPool& pool, const std::vector<PassageInput>& batch) {
  std::unordered_set<std::string> seen;
  for (const auto& p : batch) {
    if (p.id.empty()) return InvalidArgumentError("passage with an empty id");
    if (!seen.insert(p.id).second) return InvalidArgumentError(PassageName(p.id) + " appears twice in one batch");
    if (p.num_tokens < 0 || p.num_tokens > (int64_t{1} << 24)) {
      return InvalidArgumentError(PassageName(p.id) + ": num_tokens " + std::to_string(p.num_tokens) +
                                  " outside [0, 2^24]");
    }
    if (p.num_tokens > 0 && p.memory == nullptr) {
      return InvalidArgumentError(PassageName(p.id) + ": " + std::to_string(p.num_tokens) + " tokens but no memory");
    }
  }
  std::lock_guard<std::mutex> write_lock(write_mu_);
  RETURN_IF_ERROR(ReopenIfNeeded());
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  RETURN_IF_ERROR(CheckWritableIndex());
  rocksdb::WriteBatch wb;
  std::string codes;
  std::vector<Bm25Change> changes;
  changes.reserve(batch.size());
  for (const auto& p : batch) {
    for (size_t c = 0; c < codecs_.size(); ++c) {
      const Codec& codec = *codecs_[c];
      RETURN_IF_ERROR(codec.EncodePassage(pool, p.num_tokens, p.memory, codec.dim(), &codes));
      RETURN_IF_ERROR(FromRocks(
          wb.Put(MemoryFamily(static_cast<int>(c)), p.id, EncodeMemoryValue(codec.spec().id, p.num_tokens, codec.dim(), codes)),
          "batch"));
    }
    std::string text;
    PutU32(&text, static_cast<uint32_t>(p.title.size()));
    text += p.title;
    PutU32(&text, static_cast<uint32_t>(p.text.size()));
    text += p.text;
    PutU32(&text, static_cast<uint32_t>(p.token_ids.size()));
    text.append(reinterpret_cast<const char*>(p.token_ids.data()), p.token_ids.size() * 4);
    RETURN_IF_ERROR(FromRocks(wb.Put(handles_[kPassages], p.id, Frame(RecordKind::kPassage, text)), "batch"));
    changes.push_back(Bm25Change{p.id, /*remove=*/false, &p.title, &p.text});
  }
  return WriteWithIndexChanges(changes, &wb);
}

Status PassageStore::Delete(const std::vector<std::string>& ids) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  RETURN_IF_ERROR(ReopenIfNeeded());
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  RETURN_IF_ERROR(CheckWritableIndex());
  rocksdb::WriteBatch wb;
  std::vector<Bm25Change> changes;
  std::unordered_set<std::string> seen;
  for (const auto& id : ids) {
    if (!seen.insert(id).second) continue;
    RETURN_IF_ERROR(FromRocks(wb.Delete(handles_[kPassages], id), "batch"));
    for (size_t c = 0; c < codecs_.size(); ++c) {
      RETURN_IF_ERROR(FromRocks(wb.Delete(MemoryFamily(static_cast<int>(c)), id), "batch"));
    }
    changes.push_back(Bm25Change{id, /*remove=*/true, nullptr, nullptr});
  }
  return WriteWithIndexChanges(changes, &wb);
}

Status PassageStore::CheckWritableIndex() const {
  if (options_.read_only) return FailedPreconditionError("passage store " + dir_ + " is open read-only");
  if (!index_family_ || passages_.load() < 0) {
    return FailedPreconditionError("passage store " + dir_ + " has no complete retrieval index");
  }
  return Status::Ok();
}

Status PassageStore::WriteWithIndexChanges(const std::vector<Bm25Change>& changes, rocksdb::WriteBatch* wb) {
  ASSIGN_OR_RETURN(Bm25Totals totals, ReadBm25Totals(db_, handles_[kBm25], nullptr));
  RETURN_IF_ERROR(StageBm25Changes(db_, handles_[kBm25], changes, wb, &totals));
  RETURN_IF_ERROR(PutBm25Totals(handles_[kBm25], totals, wb));
  RETURN_IF_ERROR(WriteDurably(wb));
  passages_.store(totals.docs);
  return Status::Ok();
}

Status PassageStore::RebuildRetrievalIndex(int64_t* skipped) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  RETURN_IF_ERROR(ReopenIfNeeded());
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  if (options_.read_only) return FailedPreconditionError("passage store " + dir_ + " is open read-only");
  rocksdb::ColumnFamilyHandle* cf = handles_[kBm25];
  // Every key of the family starts with 'd', 'p' or 't' (bm25_postings.h). The totals record
  // goes first, so an interrupted rebuild leaves an index without totals: rebuilt on next Open.
  passages_.store(-1);
  {
    rocksdb::WriteBatch clear;
    RETURN_IF_ERROR(FromRocks(clear.DeleteRange(cf, "", "\xff"), "batch"));
    RETURN_IF_ERROR(WriteDurably(&clear));
  }
  Bm25Totals totals;
  int64_t bad = 0;
  std::vector<std::pair<std::string, PassageText>> pending;
  auto flush = [&]() -> Status {
    std::vector<Bm25Change> changes;
    changes.reserve(pending.size());
    for (const auto& [id, text] : pending) changes.push_back(Bm25Change{id, false, &text.title, &text.text});
    rocksdb::WriteBatch wb;
    RETURN_IF_ERROR(StageBm25Changes(db_, cf, changes, &wb, &totals));
    pending.clear();
    return WriteDurably(&wb);
  };
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  ro.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kPassages]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string id = it->key().ToString();
    PassageText text;
    if (!ParsePassageValue(id, it->value().data(), it->value().size(), &text).ok()) {
      ++bad;
      continue;
    }
    pending.emplace_back(id, std::move(text));
    if (pending.size() == kRebuildBatchPassages) RETURN_IF_ERROR(flush());
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "walking the passages of " + dir_));
  RETURN_IF_ERROR(flush());
  rocksdb::WriteBatch last;
  RETURN_IF_ERROR(PutBm25Totals(cf, totals, &last));
  RETURN_IF_ERROR(WriteDurably(&last));
  passages_.store(totals.docs);
  if (skipped != nullptr) *skipped = bad;
  return Status::Ok();
}

StatusOr<std::vector<Bm25Hit>> PassageStore::Search(const std::string& query, int top_k) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  if (!index_family_) {
    return FailedPreconditionError("passage store " + dir_ +
                                   " has no retrieval index (made by an older version and opened "
                                   "read-only): open it read-write once to build it");
  }
  auto hits = SearchBm25(db_, handles_[kBm25], query, top_k);
  if (!hits.ok()) return hits.status().WithContext("passage store " + dir_);
  return hits;
}

namespace {

// MultiGet over one column family; calls parse(i, slice) for found values.
template <typename T, typename Parse>
std::vector<StatusOr<T>> MultiGetParsed(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                        const std::vector<std::string>& ids, const Parse& parse) {
  const size_t n = ids.size();
  std::vector<rocksdb::Slice> keys(ids.begin(), ids.end());
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  if (n > 0) db->MultiGet(ro, cf, n, keys.data(), values.data(), statuses.data());
  std::vector<StatusOr<T>> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i].IsNotFound()) {
      out.emplace_back(NotFoundError(PassageName(ids[i]) + " not found"));
    } else if (!statuses[i].ok()) {
      out.emplace_back(FromRocks(statuses[i], PassageName(ids[i])));
    } else {
      T value;
      Status st = parse(ids[i], values[i].data(), values[i].size(), &value);
      if (st.ok()) {
        out.emplace_back(std::move(value));
      } else {
        out.emplace_back(std::move(st));
      }
    }
  }
  return out;
}

}  // namespace

std::vector<StatusOr<PassageText>> PassageStore::GetText(const std::vector<std::string>& ids) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (Status open = CheckOpen(); !open.ok()) return std::vector<StatusOr<PassageText>>(ids.size(), open);
  return MultiGetParsed<PassageText>(db_, handles_[kPassages], ids, ParsePassageValue);
}

std::vector<StatusOr<PassageCodes>> PassageStore::GetCodes(const std::vector<std::string>& ids,
                                                           int codec_index) const {
  if (codec_index < 0 || codec_index >= num_codecs()) {
    return std::vector<StatusOr<PassageCodes>>(
        ids.size(), InvalidArgumentError("codec index " + std::to_string(codec_index) + " outside [0, " +
                                         std::to_string(num_codecs()) + ")"));
  }
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (Status open = CheckOpen(); !open.ok()) return std::vector<StatusOr<PassageCodes>>(ids.size(), open);
  const Codec& codec = *codecs_[codec_index];
  return MultiGetParsed<PassageCodes>(
      db_, MemoryFamily(codec_index), ids,
      [&codec, codec_index](const std::string& id, const char* v, size_t n, PassageCodes* out) {
        Status st = ParseMemoryValue(id, v, n, codec, out);
        return codec_index == 0 || st.ok() ? st : st.WithContext("codec " + codec.spec().ToString());
      });
}

std::vector<StatusOr<PassageMemory>> PassageStore::GetMemory(const ThreadPool& pool, const std::vector<std::string>& ids,
                                                             int codec_index) const {
  auto codes = GetCodes(ids, codec_index);
  std::vector<StatusOr<PassageMemory>> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!codes[i].ok()) {
      out.emplace_back(codes[i].status());
      continue;
    }
    const Codec& codec = *codecs_[codec_index];
    PassageMemory m;
    m.num_tokens = codes[i]->num_tokens;
    m.vectors.resize(m.num_tokens * codec.dim());
    Status st = codec.DecodePassage(pool, m.num_tokens, reinterpret_cast<const uint8_t*>(codes[i]->codes.data()),
                             static_cast<int64_t>(codes[i]->codes.size()), m.vectors.data(), codec.dim());
    if (st.ok()) {
      out.emplace_back(std::move(m));
    } else {
      out.emplace_back(DataLossError(PassageName(ids[i]) + ": " + st.message()));
    }
  }
  return out;
}

Status PassageStore::ForEachText(
    const std::function<Status(const std::string& id, const StatusOr<PassageText>& text)>& fn)
    const {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a one-off walk must not evict the hot passages from the block cache
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kPassages]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string id = it->key().ToString();
    PassageText text;
    Status parsed = ParsePassageValue(id, it->value().data(), it->value().size(), &text);
    RETURN_IF_ERROR(parsed.ok() ? fn(id, std::move(text)) : fn(id, parsed));
  }
  return FromRocks(it->status(), "walking the passages of " + dir_);
}

StatusOr<StoreStats> PassageStore::Scan(bool verify) const {
  StoreStats stats;
  auto record = [&](const Status& st) {
    ++stats.corrupt;
    if (stats.corrupt_examples.size() < 10) stats.corrupt_examples.push_back(st.message());
  };
  rocksdb::ReadOptions ro;
  ro.verify_checksums = verify;
  ro.fill_cache = false;
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kPassages]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++stats.passages;
      stats.text_value_bytes += it->value().size();
      if (verify) {
        PassageText t;
        Status st = ParsePassageValue(it->key().ToString(), it->value().data(), it->value().size(), &t);
        if (!st.ok()) record(st);
      }
    }
    if (!it->status().ok()) record(FromRocks(it->status(), "scanning passages"));
  }
  for (int c = 0; c < num_codecs(); ++c) {
    const Codec& codec = *codecs_[c];
    CodecStoreStats cs;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, MemoryFamily(c)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++cs.memories;
      cs.memory_value_bytes += it->value().size();
      const std::string id = it->key().ToString();
      PassageCodes codes;
      Status st = ParseMemoryValue(id, it->value().data(), it->value().size(), codec, &codes);
      if (st.ok()) {
        cs.tokens += codes.num_tokens;
        cs.code_bytes += static_cast<int64_t>(codes.codes.size());
      } else if (verify) {
        record(c == 0 ? st : st.WithContext("codec " + codec.spec().ToString()));
      }
    }
    if (!it->status().ok()) record(FromRocks(it->status(), "scanning memory of codec " + codec.spec().ToString()));
    stats.codecs.push_back(cs);
  }
  stats.memories = stats.codecs[0].memories;
  stats.tokens = stats.codecs[0].tokens;
  stats.code_bytes = stats.codecs[0].code_bytes;
  stats.memory_value_bytes = stats.codecs[0].memory_value_bytes;
  if (index_family_) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kBm25]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ++stats.index_records;
      if (!verify) continue;
      Status st = VerifyBm25Record(it->key().ToString(), it->value().data(), it->value().size());
      if (!st.ok()) record(st);
    }
    if (!it->status().ok()) record(FromRocks(it->status(), "scanning the retrieval index"));
  }
  for (int cf = kMeta; cf < static_cast<int>(handles_.size()); ++cf) {
    uint64_t v = 0;
    if (db_->GetIntProperty(handles_[cf], "rocksdb.total-sst-files-size", &v)) stats.sst_bytes += v;
    if (db_->GetIntProperty(handles_[cf], "rocksdb.total-blob-file-size", &v)) stats.sst_bytes += v;
  }
  return stats;
}

Status PassageStore::Flush() {
  if (options_.read_only) return Status::Ok();
  rocksdb::FlushOptions fo;
  fo.wait = true;
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  return FromRocks(db_->Flush(fo, handles_), "flushing passage store " + dir_);
}

Status PassageStore::PutRawMemoryValueForTest(const std::string& id, const std::string& value, int codec_index) {
  RETURN_IF_ERROR(ReopenIfNeeded());
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  rocksdb::WriteBatch wb;
  RETURN_IF_ERROR(FromRocks(wb.Put(MemoryFamily(codec_index), id, value), "batch"));
  return WriteDurably(&wb);
}

Status PassageStore::PutRawIndexValueForTest(const std::string& key, const std::string& value) {
  RETURN_IF_ERROR(ReopenIfNeeded());
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  rocksdb::WriteBatch wb;
  RETURN_IF_ERROR(FromRocks(wb.Put(handles_[kBm25], key, value), "batch"));
  return WriteDurably(&wb);
}

StatusOr<std::string> PassageStore::GetRawMemoryValueForTest(const std::string& id) const {
  std::string value;
  std::shared_lock<std::shared_mutex> lock(mu_);
  RETURN_IF_ERROR(CheckOpen());
  RETURN_IF_ERROR(FromRocks(db_->Get(rocksdb::ReadOptions(), handles_[kMemory], id, &value), PassageName(id)));
  return value;
}

}  // namespace memoria

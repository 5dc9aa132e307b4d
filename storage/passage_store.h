// PassageStore: the passage memory on RocksDB. Keyed by passage id, it holds each passage's title,
// text and token ids, and its compressed memory (codec codes of num_tokens x d memory vectors),
// plus the store's identity: the fingerprint of the model and the layer split that produced the
// memory, and the codec with its trained state (PQ codebooks, BTR calibration).
//
// A store holds its memory in one codec (the primary one, part of its identity) and optionally
// in further "extra" codecs, each passage's memory encoded by every one of them in the same
// WriteBatch, so that a reader may choose per request between, e.g., PQ and BTR codes of the
// same passages (GetCodes / GetMemory take the codec's index; FindCodec maps a spec to it).
//
// Column families (one per record kind):
//   meta      "identity" -> JSON {format_version, model_fingerprint, layer_split, codec,
//             extra_codecs (absent when none)}
//   codec     "state/<8-digit chunk>" -> codec state (codec.h), in chunks of <= 4 MiB
//             (C = 65536 codebooks are hundreds of MB); "state/count" -> chunk count + size;
//             the same under "codec<i>/" for extra codec i (1-based)
//   passages  passage id -> title, text, token ids
//   memory    passage id -> codec id, num_tokens, dim, codes (the codec's passage blob:
//             code_size(num_tokens) bytes, or a merged btr blob, Codec::EncodePassage)
//   memory.<i>  the same for extra codec i
//   bm25      the built-in retriever's index over the passages' words (storage/bm25_postings.h):
//             per-passage term lists, per-term postings and the totals BM25 needs. It is written
//             in the same WriteBatch as the passages, so it is always exactly the stored passages.
//             A store made before this family existed gets it on its first read-write Open (one
//             walk of the text records); a read-only Open of such a store has no Search.
//
// Every value is framed as
//   /// Layout: kind (u8) | format version (u8) | payload | CRC32C of the bytes before it (u32 LE)
// so a flipped byte, a truncated value, a value of another kind or a newer format version is
// detected on read, independently of RocksDB's own block checksums.
// Payloads (little endian):
//   passages  u32 title_len | title | u32 text_len | text | u32 n | n x i32 token ids
//   memory    u8 codec id | u32 num_tokens | u32 dim | u32 code_bytes | codes
//
// Durability: Ingest/Delete write one WriteBatch (all passages of the batch or none) through the
// WAL and return only after RocksDB acknowledged it. With sync = true (default) the WAL is
// fsync'ed before returning: acknowledged batches survive a process kill and a power loss. With
// sync = false they survive a process kill (kill -9: the WAL is in the OS page cache) but the
// last batches may be lost on power loss or kernel crash.
//
// Errors:
//   Create/Open   ALREADY_EXISTS (Create on an existing store), NOT_FOUND (Open on no store),
//                 FAILED_PRECONDITION (the store was written by another model fingerprint, layer
//                 split or codec: the message names the stored and the requested values),
//                 DATA_LOSS (metadata or codec state corrupt), UNAVAILABLE (RocksDB I/O, lock)
//   reads         NOT_FOUND naming the passage id; DATA_LOSS naming the passage id for a value
//                 that fails its checksum, is truncated, or whose codec id, dim or size does not
//                 match the store's codec; FAILED_PRECONDITION for a value of a newer format
//                 version. One bad passage never fails the others of a MultiGet.
//   writes        INVALID_ARGUMENT for a passage whose memory has the wrong dim, an empty id or
//                 duplicate ids in one batch; UNAVAILABLE/INTERNAL for RocksDB write errors. A
//                 batch whose WAL append or sync failed is not acknowledged (UNAVAILABLE) and is
//                 all-or-nothing after a reopen. RocksDB refuses every later write of the open
//                 database after such a failure (a background error that Resume() does not
//                 clear), so a failed write marks the store for reopening: the next Ingest or
//                 Delete first closes and reopens the database (RocksDB replays its WAL), then
//                 writes; reads wait for the reopen (milliseconds) and go on. When the reopen
//                 itself fails (the disk still failing) the store stays closed: every call
//                 answers UNAVAILABLE naming the cause, and the next write tries again.
//   I/O errors    UNAVAILABLE naming the passage (reads) or the store (writes): the files may be
//                 fine and a retry may succeed, unlike DATA_LOSS (checksums failed).
// Thread-safety: all methods may be called concurrently (RocksDB is thread-safe; a shared mutex
// lets a reopen after a failed write exclude the other calls); each call's ThreadPool must be
// used by one call at a time (thread_pool.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "kernels/thread_pool.h"
#include "storage/bm25.h"
#include "storage/codec.h"
#include "storage/record_framing.h"  // Frame, Crc32c, kStoreFormatVersion

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Env;
class FileSystem;
class WriteBatch;
}  // namespace rocksdb

namespace memoria {

struct Bm25Change;  // storage/bm25_postings.h

struct PassageStoreOptions {
  // fsync the WAL before acknowledging a write (see Durability above). Default true.
  bool sync = true;
  // BlobDB for the memory column family: values >= min_blob_size bytes go to blob files, keeping
  // the LSM tree small so compactions do not rewrite tens of KB per passage. Default off: in
  // bench/results/pq.md (1000 passages x 19.2 KB) plain SST values read faster (MultiGet of 20:
  // 0.39 ms vs 0.58 ms) and ingest faster; BlobDB pays off only once compactions of a large store
  // dominate, which that measurement does not reach.
  bool enable_blob_files = false;
  uint64_t min_blob_size = 1024;
  // Block cache for the SST files (bytes). Default 64 MiB. 0 = no block cache: every read of a
  // data block reaches the files (fault-injection and corruption tests).
  uint64_t block_cache_bytes = 64ull << 20;
  // Open read-only (inspect tools): writes return FAILED_PRECONDITION. Default false.
  bool read_only = false;
  // The file system RocksDB works through; null (default) = the process's real one. Tests install
  // a FaultInjectionFileSystem (storage/fault_injection_file_system.h) here; the store holds a
  // reference to it while open.
  std::shared_ptr<rocksdb::FileSystem> file_system;
};

// What produced the stored memory. A store refuses to open for a different identity (the
// extra codecs are not compared: they are read from the store).
struct StoreIdentity {
  uint64_t model_fingerprint = 0;  // hash of the model's weights + config (opaque here)
  int32_t layer_split = 0;         // memory-encoder layers applied before storing
  CodecSpec codec;                 // the primary codec
  std::vector<CodecSpec> extra_codecs;  // further codecs the memory is also stored in
  // "fingerprint 0x00000000deadbeef, layer split 6, codec pq(d=768, g=96, C=256)", then
  // " (also btr(...), ...)" when there are extra codecs
  std::string ToString() const;
};

// One passage to ingest. memory: (num_tokens, codec dim) f32 rows, row stride = dim.
struct PassageInput {
  std::string id;
  std::string title;
  std::string text;
  std::vector<int32_t> token_ids;
  int64_t num_tokens = 0;
  const float* memory = nullptr;
};

// One passage's stored text record.
struct PassageText {
  std::string title;
  std::string text;
  std::vector<int32_t> token_ids;
};

// One passage's stored memory, checksum-verified: codes of num_tokens tokens.
struct PassageCodes {
  int64_t num_tokens = 0;
  std::string codes;  // the codec's passage blob (Codec::EncodePassage; DecodePassage reads it)
};

// Decoded memory of one passage: (num_tokens, dim) f32, row-major.
struct PassageMemory {
  int64_t num_tokens = 0;
  std::vector<float> vectors;
};

// Memory records of one codec (Scan).
struct CodecStoreStats {
  int64_t memories = 0;            // records in the codec's memory family
  int64_t tokens = 0;              // sum of num_tokens over them
  int64_t code_bytes = 0;          // sum of code bytes (payload only)
  int64_t memory_value_bytes = 0;  // sum of whole values (framing included)
};

// Counts and checks over the whole store (Scan).
struct StoreStats {
  int64_t passages = 0;        // records in the passages family
  int64_t memories = 0;        // records in the memory family
  int64_t tokens = 0;          // sum of num_tokens over memory records
  int64_t code_bytes = 0;      // sum of code bytes (payload only)
  int64_t memory_value_bytes = 0;  // sum of whole memory values (framing included)
  // The four fields above are the primary codec's; codecs[i] has them for codec i (0 = primary).
  std::vector<CodecStoreStats> codecs;
  int64_t text_value_bytes = 0;
  int64_t index_records = 0;   // records of the retrieval index (bm25 family)
  int64_t corrupt = 0;         // values failing verification (Scan with verify)
  std::vector<std::string> corrupt_examples;  // "passage 'x': <error>", at most 10
  int64_t sst_bytes = 0;       // RocksDB live SST + blob file bytes on disk
};

class PassageStore {
 public:
  // Creates a new store in `dir` for `identity`, saving the codec's state (codec must be ready()
  // and its spec equal identity.codec). ALREADY_EXISTS when dir already holds a store.
  static Status Create(const PassageStoreOptions& options, const std::string& dir,
                       const StoreIdentity& identity, const Codec& codec,
                       std::unique_ptr<PassageStore>* out);
  // The same with extra codecs: codecs[0] is the primary one (identity.codec), codecs[i] extra
  // codec i (identity.extra_codecs[i - 1]); all ready, no spec twice (INVALID_ARGUMENT otherwise).
  static Status Create(const PassageStoreOptions& options, const std::string& dir,
                       const StoreIdentity& identity, const std::vector<const Codec*>& codecs,
                       std::unique_ptr<PassageStore>* out);
  // Opens an existing store. With `expected` set, its fingerprint, layer split and codec spec must
  // equal the stored ones (FAILED_PRECONDITION naming both otherwise); nullptr accepts any
  // (inspection tools).
  static Status Open(const PassageStoreOptions& options, const std::string& dir,
                     const StoreIdentity* expected, std::unique_ptr<PassageStore>* out);
  ~PassageStore();
  PassageStore(const PassageStore&) = delete;
  PassageStore& operator=(const PassageStore&) = delete;

  const StoreIdentity& identity() const { return identity_; }
  const Codec& codec() const { return *codecs_[0]; }  // the primary codec
  // Codecs the memory is stored in: 0 = the primary one, then the extra ones in identity order.
  int num_codecs() const { return static_cast<int>(codecs_.size()); }
  const Codec& codec(int index) const { return *codecs_[index]; }
  // The index of the codec with this spec, -1 when the store has none.
  int FindCodec(const CodecSpec& spec) const;
  // The index of the codec named by its flag text (CodecSpec::ToFlag, e.g. "btr"); "" = 0, the
  // primary one. INVALID_ARGUMENT listing the store's codecs for text that does not parse or
  // names a codec the store does not hold.
  StatusOr<int> FindCodecByFlag(const std::string& flag) const;
  const std::string& dir() const { return dir_; }
  // Times the database was reopened after a failed write (see Errors), successful or not.
  int64_t reopen_attempts() const { return reopen_attempts_.load(); }

  // Encodes every passage's memory with each of the store's codecs and writes the batch atomically and
  // durably (see Durability), with the retrieval index's entries for the passages' words. Existing
  // ids are overwritten. DATA_LOSS naming the passage when an overwritten passage's index record
  // fails verification (RebuildRetrievalIndex repairs the index).
  Status Ingest(const ThreadPool& pool, const std::vector<PassageInput>& batch);
  // Deletes passages and their index entries (absent ids are not an error), atomically and
  // durably.
  Status Delete(const std::vector<std::string>& ids);

  // The built-in retriever: the best top_k passages for `query` by BM25 over their title and
  // text words (storage/bm25.h), best first, from one consistent snapshot. Empty when no stored
  // passage holds a query word. FAILED_PRECONDITION when the store has no complete index (a
  // read-only Open of a store made before the index existed); DATA_LOSS naming the term and
  // passage of an index record failing verification.
  StatusOr<std::vector<Bm25Hit>> Search(const std::string& query, int top_k) const;
  // Passages stored (text records), as the retrieval index counts them; -1 when the store has no
  // complete index (see Search).
  int64_t passage_count() const { return passages_.load(); }
  // Rebuilds the retrieval index from the text records (one walk): the repair for an index record
  // that fails verification. Text records failing verification are left out (they answer
  // DATA_LOSS when read); *skipped (optional) counts them. Writes are held off meanwhile.
  Status RebuildRetrievalIndex(int64_t* skipped = nullptr);

  // Batched point reads (RocksDB MultiGet); result i belongs to ids[i].
  std::vector<StatusOr<PassageText>> GetText(const std::vector<std::string>& ids) const;
  // GetCodes/GetMemory read the memory of codec `codec_index` (0 = primary; INVALID_ARGUMENT
  // for every id when out of range); errors of an extra codec's values name the codec.
  std::vector<StatusOr<PassageCodes>> GetCodes(const std::vector<std::string>& ids, int codec_index = 0) const;
  // GetCodes + the codec's DecodePassage.
  std::vector<StatusOr<PassageMemory>> GetMemory(const ThreadPool& pool, const std::vector<std::string>& ids,
                                                 int codec_index = 0) const;

  // Flushes memtables to SST and blob files (the WAL already made the data durable; this moves
  // it into its long-term files, e.g. before copying a store or inspecting its files).
  Status Flush();

  // Walks every record; with verify, checks framing, checksums and codec sizes of each value
  // (RocksDB block checksums too) and collects the failures instead of stopping.
  StatusOr<StoreStats> Scan(bool verify) const;

  // Calls fn(id, text) for every passage text record in id order (a consistent snapshot), e.g. to
  // rebuild an in-memory retrieval index at start. A record that fails verification reaches fn
  // as its DATA_LOSS (the caller decides whether one bad passage stops it); a non-OK status from
  // fn stops the walk and is returned, as are RocksDB iteration errors.
  Status ForEachText(const std::function<Status(const std::string& id,
                                                const StatusOr<PassageText>& text)>& fn) const;

  // Test hook: writes `value` verbatim as passage id's memory value (corruption tests).
  Status PutRawMemoryValueForTest(const std::string& id, const std::string& value, int codec_index = 0);
  // Test hook: writes `value` verbatim under `key` in the retrieval index (bm25_postings.h keys).
  Status PutRawIndexValueForTest(const std::string& key, const std::string& value);
  // Test hook: the stored memory value of id, unverified.
  StatusOr<std::string> GetRawMemoryValueForTest(const std::string& id) const;

 private:
  PassageStore() = default;
  // extra_codecs: memory families to create (create); an existing store's are found by name.
  static Status OpenDb(const PassageStoreOptions& options, const std::string& dir, bool create,
                       int extra_codecs, std::unique_ptr<PassageStore>* out);
  // Callers hold mu_ (shared). A failed write marks the store for reopening.
  Status WriteDurably(rocksdb::WriteBatch* batch);
  // FAILED_PRECONDITION for a read-only store or one without a complete index. Callers hold mu_.
  Status CheckWritableIndex() const;
  // Adds the index changes and the new totals to *wb, writes it durably and publishes the new
  // passage count. Callers hold write_mu_ and mu_ (shared).
  Status WriteWithIndexChanges(const std::vector<Bm25Change>& changes, rocksdb::WriteBatch* wb);
  Status LoadIdentityAndCodec(const StoreIdentity* expected);
  Status LoadCodecState(int codec_index, Codec* codec);
  rocksdb::ColumnFamilyHandle* MemoryFamily(int codec_index) const;
  // Before a write: reopens the database when a previous write failed (exclusive lock).
  Status ReopenIfNeeded();
  // UNAVAILABLE for calls on a store whose reopen failed; OK while the database is open.
  // Callers hold mu_.
  Status CheckOpen() const;
  void CloseDb();  // callers hold mu_ exclusively (or own the store alone)

  PassageStoreOptions options_;
  std::string dir_;
  StoreIdentity identity_;
  std::vector<std::unique_ptr<Codec>> codecs_;  // primary first
  std::shared_ptr<rocksdb::Env> env_;  // wraps options_.file_system; null = the default Env
  rocksdb::DB* db_ = nullptr;
  // default, meta, codec, passages, memory, bm25 (no bm25 in a read-only open of an old store),
  // then memory.1 .. memory.<extra codecs> from extra_memory_cf_begin_ on
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  size_t extra_memory_cf_begin_ = 0;
  bool index_family_ = true;  // handles_ holds the bm25 family
  struct RocksOpenParams;  // the DBOptions and column families db_ was opened with
  std::unique_ptr<RocksOpenParams> open_params_;
  // Shared by every use of db_/handles_; exclusive while reopening.
  mutable std::shared_mutex mu_;
  std::atomic<bool> reopen_needed_{false};
  std::atomic<int64_t> reopen_attempts_{0};
  std::string reopen_error_;  // why the last reopen failed (db_ == nullptr then); guarded by mu_
  // Serializes Ingest/Delete/RebuildRetrievalIndex: each reads the index records its batch
  // replaces (bm25_postings.h). Taken before mu_.
  std::mutex write_mu_;
  std::atomic<int64_t> passages_{-1};  // index totals of the last durable write; -1: no index
};

// The memory value layout above, for tools and tests that build or parse values directly.
std::string EncodeMemoryValue(CodecId codec, int64_t num_tokens, int64_t dim,
                              const std::string& codes, uint8_t version = kStoreFormatVersion);

// Decoding of stored values (the framing and payload layouts above): what every read does with
// the bytes RocksDB returns, for tools and the fuzz targets. `id` names the passage in errors:
// DATA_LOSS for a bad checksum, truncation, a record of another kind or, for memory, a codec id,
// dim or code size that does not match `codec`; FAILED_PRECONDITION for a newer format version.
Status ParseMemoryValue(const std::string& id, const char* value, size_t size, const Codec& codec,
                        PassageCodes* out);
Status ParsePassageValue(const std::string& id, const char* value, size_t size, PassageText* out);

}  // namespace memoria

#include "storage/bm25_postings.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <memory>
#include <set>

#include "storage/record_framing.h"
#include "storage/rocks_status.h"

namespace memoria {
namespace {

struct DocRecord {
  int64_t length = 0;
  std::vector<std::string> terms;
};

std::string DocValue(const Bm25Doc& doc) {
  std::string payload;
  PutU64(&payload, static_cast<uint64_t>(doc.length));
  PutU32(&payload, static_cast<uint32_t>(doc.tf.size()));
  for (const auto& [term, tf] : doc.tf) {
    payload.push_back(static_cast<char>(term.size()));  // <= kMaxBm25TermBytes
    payload += term;
    PutU32(&payload, static_cast<uint32_t>(tf));
  }
  return Frame(RecordKind::kTermDoc, payload);
}

Status ParseDoc(const std::string& id, const char* value, size_t size, DocRecord* out) {
  const std::string what = "passage '" + id + "' retrieval-index terms";
  const char* payload;
  size_t len;
  RETURN_IF_ERROR(Unframe(value, size, RecordKind::kTermDoc, what, &payload, &len));
  PayloadReader r(payload, len);
  uint64_t length;
  uint32_t n;
  if (!r.U64(&length) || !r.U32(&n)) return DataLossError(what + ": payload of " + std::to_string(len) + " bytes is truncated");
  out->length = static_cast<int64_t>(length);
  out->terms.clear();
  for (uint32_t i = 0; i < n; ++i) {
    uint8_t term_len;
    uint32_t tf;
    std::string term;
    if (!r.U8(&term_len) || !r.Bytes(term_len, &term) || !r.U32(&tf)) {
      return DataLossError(what + ": term " + std::to_string(i) + " of " + std::to_string(n) +
                           " runs past the payload's " + std::to_string(len) + " bytes");
    }
    out->terms.push_back(std::move(term));
  }
  if (r.remaining() != 0) {
    return DataLossError(what + ": " + std::to_string(r.remaining()) + " bytes after the last term");
  }
  return Status::Ok();
}

std::string PostingValue(int32_t tf, int64_t length) {
  std::string payload;
  PutU32(&payload, static_cast<uint32_t>(tf));
  PutU64(&payload, static_cast<uint64_t>(length));
  return Frame(RecordKind::kTermPosting, payload);
}

Status ParsePosting(const std::string& term, const std::string& id, const char* value, size_t size,
                    Bm25Posting* out) {
  const std::string what = "retrieval-index posting of term '" + term + "' in passage '" + id + "'";
  const char* payload;
  size_t len;
  RETURN_IF_ERROR(Unframe(value, size, RecordKind::kTermPosting, what, &payload, &len));
  PayloadReader r(payload, len);
  uint32_t tf;
  uint64_t length;
  if (!r.U32(&tf) || !r.U64(&length) || r.remaining() != 0) {
    return DataLossError(what + ": payload is " + std::to_string(len) + " bytes, expected 12");
  }
  out->id = id;
  out->tf = static_cast<int32_t>(tf);
  out->length = static_cast<int64_t>(length);
  return Status::Ok();
}

Status ParseTotals(const char* value, size_t size, Bm25Totals* out) {
  const std::string what = "retrieval-index totals";
  const char* payload;
  size_t len;
  RETURN_IF_ERROR(Unframe(value, size, RecordKind::kTermTotals, what, &payload, &len));
  PayloadReader r(payload, len);
  uint64_t docs, total;
  if (!r.U64(&docs) || !r.U64(&total) || r.remaining() != 0) {
    return DataLossError(what + ": payload is " + std::to_string(len) + " bytes, expected 16");
  }
  out->docs = static_cast<int64_t>(docs);
  out->total_length = static_cast<int64_t>(total);
  return Status::Ok();
}

}  // namespace

std::string Bm25DocKey(const std::string& id) { return "d" + id; }

std::string Bm25PostingKey(const std::string& term, const std::string& id) {
  std::string key = "p" + term;
  key.push_back('\0');
  return key + id;
}

std::string Bm25TotalsValue(const Bm25Totals& totals) {
  std::string payload;
  PutU64(&payload, static_cast<uint64_t>(totals.docs));
  PutU64(&payload, static_cast<uint64_t>(totals.total_length));
  return Frame(RecordKind::kTermTotals, payload);
}

StatusOr<Bm25Totals> ReadBm25Totals(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                    const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.snapshot = snapshot;
  std::string value;
  const rocksdb::Status s = db->Get(ro, cf, kBm25TotalsKey, &value);
  if (s.IsNotFound()) return NotFoundError("the retrieval index has no totals record (never completed)");
  RETURN_IF_ERROR(FromRocks(s, "reading the retrieval-index totals"));
  Bm25Totals totals;
  RETURN_IF_ERROR(ParseTotals(value.data(), value.size(), &totals));
  return totals;
}

Status StageBm25Changes(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                        const std::vector<Bm25Change>& changes, rocksdb::WriteBatch* batch,
                        Bm25Totals* totals) {
  const size_t n = changes.size();
  std::vector<std::string> keys;
  keys.reserve(n);
  for (const Bm25Change& c : changes) keys.push_back(Bm25DocKey(c.id));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  if (n > 0) db->MultiGet(ro, cf, n, slices.data(), values.data(), statuses.data());
  std::set<std::string> staged;  // ids this call already changed: their doc record is in `batch`
  for (size_t i = 0; i < n; ++i) {
    const Bm25Change& c = changes[i];
    if (!staged.insert(c.id).second) {
      return InvalidArgumentError("passage '" + c.id + "' appears twice in one retrieval-index update");
    }
    if (statuses[i].ok()) {  // indexed now: take its old entries out
      DocRecord old;
      RETURN_IF_ERROR(ParseDoc(c.id, values[i].data(), values[i].size(), &old));
      for (const std::string& term : old.terms) {
        RETURN_IF_ERROR(FromRocks(batch->Delete(cf, Bm25PostingKey(term, c.id)), "batch"));
      }
      RETURN_IF_ERROR(FromRocks(batch->Delete(cf, keys[i]), "batch"));
      totals->docs -= 1;
      totals->total_length -= old.length;
    } else if (!statuses[i].IsNotFound()) {
      return FromRocks(statuses[i], "passage '" + c.id + "': reading its retrieval-index terms");
    }
    if (c.remove) continue;
    const Bm25Doc doc = Bm25Analyze(*c.title, *c.text);
    for (const auto& [term, tf] : doc.tf) {
      RETURN_IF_ERROR(FromRocks(batch->Put(cf, Bm25PostingKey(term, c.id), PostingValue(tf, doc.length)), "batch"));
    }
    RETURN_IF_ERROR(FromRocks(batch->Put(cf, keys[i], DocValue(doc)), "batch"));
    totals->docs += 1;
    totals->total_length += doc.length;
  }
  return Status::Ok();
}

Status PutBm25Totals(rocksdb::ColumnFamilyHandle* cf, const Bm25Totals& totals, rocksdb::WriteBatch* batch) {
  return FromRocks(batch->Put(cf, kBm25TotalsKey, Bm25TotalsValue(totals)), "batch");
}

StatusOr<std::vector<Bm25Hit>> SearchBm25(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                          const std::string& query, int top_k) {
  const std::vector<std::string> words = Bm25Terms(query);
  const std::set<std::string> terms(words.begin(), words.end());  // each query term once
  // One snapshot for the totals and every term's postings: a concurrent ingest is seen entirely
  // or not at all.
  struct SnapshotGuard {
    rocksdb::DB* db;
    const rocksdb::Snapshot* s;
    ~SnapshotGuard() { db->ReleaseSnapshot(s); }
  } snapshot{db, db->GetSnapshot()};
  auto totals = ReadBm25Totals(db, cf, snapshot.s);
  if (totals.status().code() == StatusCode::kNotFound) {
    return FailedPreconditionError(totals.status().message());
  }
  RETURN_IF_ERROR(totals.status());
  std::vector<std::vector<Bm25Posting>> postings;
  for (const std::string& term : terms) {
    std::string prefix = "p" + term;
    prefix.push_back('\0');
    std::string upper = "p" + term;
    upper.push_back('\x01');
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.s;
    ro.verify_checksums = true;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cf));
    std::vector<Bm25Posting> list;
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      const rocksdb::Slice key = it->key();
      const std::string id(key.data() + prefix.size(), key.size() - prefix.size());
      Bm25Posting p;
      RETURN_IF_ERROR(ParsePosting(term, id, it->value().data(), it->value().size(), &p));
      list.push_back(std::move(p));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading the retrieval index for term '" + term + "'"));
    if (!list.empty()) postings.push_back(std::move(list));
  }
  return Bm25Rank(postings, totals->docs, totals->total_length, top_k);
}

Status VerifyBm25Record(const std::string& key, const char* value, size_t size) {
  if (key == kBm25TotalsKey) {
    Bm25Totals totals;
    return ParseTotals(value, size, &totals);
  }
  if (!key.empty() && key[0] == 'd') {
    DocRecord doc;
    return ParseDoc(key.substr(1), value, size, &doc);
  }
  const size_t zero = key.find('\0');
  if (!key.empty() && key[0] == 'p' && zero != std::string::npos) {
    Bm25Posting p;
    return ParsePosting(key.substr(1, zero - 1), key.substr(zero + 1), value, size, &p);
  }
  return DataLossError("retrieval index: unexpected key of " + std::to_string(key.size()) + " bytes");
}

}  // namespace memoria

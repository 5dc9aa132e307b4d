// Question answering evaluation of a T5 reader (the library behind `memoria eval-qa`): runs the
// server's engine over a QA file and scores the answers with SQuAD v1.1's exact match and F1
// (tools/qa_metrics.h).
//
// Modes:
//   lumen  the server's answering path itself: LumenRunner::Answer (server/lumen_runner.h) over a
//          passage store built by `memoria build-store` for this model and alpha -- store read,
//          codec decode, live encoder over [MemEnc(Q); memory_i], greedy or beam generation --
//          so any codec's effect on quality is what the server would serve.
//   fid    the Fusion-in-Decoder baseline: LumenModel::FidEncode (the full encoder over
//          [question part; passage part] per passage, on token ids, nothing read from memory)
//          then T5Generate. Passage ids come from the store's text records when --store is given
//          (the very ids whose memory the store holds), else from the corpus tokenized as
//          build-store does (FiD passage part, truncated to max_passage_tokens with EOS last).
//   With alpha = 1 and codec none the two are the same computation (engine/lumen.h: MemEnc is the
//   token embedding and LiveEncode is bit-identical to FidEncode), so they predict the same.
//
// QA files (by extension: ".json" = SQuAD, anything else = JSONL):
//   squad  SQuAD v1.1 JSON: each question's gold passage is its paragraph, with the id
//          build-store gives it ("<article title>/<paragraph index>", tools/corpus_reader.h);
//          gold answers = answers[].text. A question without answers is an error (v2's
//          unanswerable questions are not scored).
//   jsonl  {"question": str, "answers": [str] | "answer": [str] | str, "passage_ids": [str]
//          (optional), "id": str|int (optional; default the line number)} per line.
//
// Passages per question (PassageSelection):
//   gold          the gold passage(s) only (needs passage ids: SQuAD, or JSONL passage_ids)
//   bm25:K        the top K of the server's BM25 retriever (server/bm25_index.h) over every passage
//                 of the store (or of the corpus in fid mode without a store)
//   gold+bm25:K   K passages in all: the gold one(s), then the best BM25 hits that are not gold
// A question whose retrieval finds nothing (no question word in any passage) gets the empty
// prediction (scored 0) and is counted in EvalQaReport::unretrieved.
//
// Units: scores are percentages (100 x the mean over questions, as the official script prints);
// tokens are SentencePiece ids; seconds are wall time. Answer tokens count every generated id
// (EOS included: each costs a decoder step). Encoder tokens: sum over passages of question part +
// passage part tokens (the server's prompt_tokens).
// Errors: INVALID_ARGUMENT for bad options, malformed QA files (naming the line or question),
// gold passages requested for a question without passage ids; NOT_FOUND for a missing file and
// for gold passages absent from the store / corpus (all such ids named, up to 20, and counted);
// FAILED_PRECONDITION when the store was built for another model fingerprint or layer split
// (both identities named); errors of the engine, tokenizer and store as they are.
// Thread-safety: EvaluateQa may run concurrently with itself on different stores (RocksDB allows
// one writer, and the store is opened read-only).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/lumen.h"
#include "engine/t5_model.h"

namespace memoria {

struct QaExample {
  std::string id;
  std::string question;
  std::vector<std::string> answers;      // gold answers, >= 1
  std::vector<std::string> passage_ids;  // gold passages; may be empty for JSONL
};

// Reads the first `limit` questions (<= 0: all) of a SQuAD JSON or JSONL file (see above).
StatusOr<std::vector<QaExample>> ReadQaFile(const std::string& path, int64_t limit);

struct PassageSelection {
  bool gold = true;
  int bm25_k = 0;  // 0: no retrieval
  std::string ToString() const;  // "gold" | "bm25:K" | "gold+bm25:K"
};
// "gold" | "bm25:K" | "gold+bm25:K" with K >= 1 (gold+bm25: K >= 2, one slot is the gold one).
StatusOr<PassageSelection> ParsePassageSelection(const std::string& text);

struct EvalQaOptions {
  std::string model_dir;       // T5 model dir (config.json + safetensors)
  std::string tokenizer_path;  // "": <model_dir>/spiece.model, else <model_dir>/tokenizer.model
  std::string qa_path;
  std::string store_dir;       // lumen: required; fid: optional (passage token ids from it)
  std::string codec;           // lumen: the store codec to read (flag text); "": the primary one
  std::string corpus_path;     // fid without a store: passages (JSONL or SQuAD); "": the QA file
                               // when it is SQuAD
  bool fid = false;            // false: lumen
  double alpha = 1.0 / 3.0;    // lumen live fraction; must give the store's layer split
  PassageSelection passages;
  int64_t limit = 0;           // questions, <= 0: all
  int64_t max_passage_tokens = 256;  // fid from a corpus: build-store's --max-tokens
  T5GenerationOptions generation;    // max_new_tokens, num_beams, length_penalty, extractive
  int threads = 0;             // compute threads, 0 = all cores
  FidTemplate fid_template;
};

struct EvalQaPrediction {
  std::string id;
  std::string question;
  std::string prediction;
  std::vector<std::string> answers;
  std::vector<std::string> passage_ids;  // the passages the reader saw, in order
  bool gold_retrieved = false;           // a gold passage is among passage_ids
  double exact_match = 0;                // 0 or 1
  double f1 = 0;                         // [0, 1]
  int64_t answer_tokens = 0;             // generated ids, EOS included
};

struct EvalQaReport {
  std::string mode;         // "lumen" | "fid"
  std::string passages;     // PassageSelection::ToString()
  uint64_t model_fingerprint = 0;
  int64_t d_model = 0;
  int memory_layers = 0;    // lumen: the store's layer split
  int live_layers = 0;      // lumen: encoder layers run per question; fid: all of them
  std::string codec;        // lumen: the store codec read (CodecSpec::ToString); fid: ""
  int64_t bytes_per_token = 0;  // lumen: CodecSpec::BytesPerToken; fid: 0 (text only)
  double ratio_vs_fp32 = 0;     // 4 d / bytes_per_token (as inspect-store); fid: 0
  double ratio_vs_bf16 = 0;     // 2 d / bytes_per_token

  int64_t questions = 0;
  double exact_match = 0;   // percent
  double f1 = 0;            // percent
  int64_t unretrieved = 0;  // questions whose retrieval found no passage
  int64_t gold_known = 0;   // questions with gold passage ids
  int64_t gold_retrieved = 0;   // of those, how many saw a gold passage
  int64_t passages_read = 0;    // over all questions
  int64_t answer_tokens = 0;
  int64_t encoder_tokens = 0;
  double retrieve_seconds = 0;
  double store_read_seconds = 0;   // lumen: memory MultiGet; fid: the passages' token ids
  double decompress_seconds = 0;   // lumen: codec decode
  double encoder_seconds = 0;   // lumen: live encoder (incl. MemEnc(Q)); fid: FidEncode
  double decoder_seconds = 0;
  double answer_seconds = 0;    // question loop, all stages
  double load_seconds = 0;      // model, tokenizer, store, retriever
  std::vector<EvalQaPrediction> predictions;
};

// Reported after every answered question.
struct EvalQaProgress {
  int64_t done = 0, total = 0;
  double exact_match = 0, f1 = 0;  // percent, so far
  double seconds = 0;              // since the first question
};

Status EvaluateQa(const EvalQaOptions& options,
                  const std::function<void(const EvalQaProgress&)>& progress,
                  EvalQaReport* report);

// One JSON object per line: {"id", "question", "prediction", "answers", "passage_ids",
// "gold_retrieved", "em", "f1", "answer_tokens"}. INTERNAL when the file cannot be written.
Status WriteQaPredictions(const std::string& path, const std::vector<EvalQaPrediction>& predictions);

// The summary as one JSON object (every scalar field of the report, no predictions).
std::string EvalQaReportJson(const EvalQaReport& report);

}  // namespace memoria

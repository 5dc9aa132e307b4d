#include "tools/corpus_reader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <utility>

namespace memoria {
namespace {

using nlohmann::json;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Keeps ids unique: a repeated id would silently overwrite a passage in the store.
class IdSet {
 public:
  Status Add(const std::string& id, const std::string& where) {
    if (id.empty()) return InvalidArgumentError("empty passage id at " + where);
    auto [it, inserted] = seen_.emplace(id, where);
    if (!inserted) {
      return InvalidArgumentError("passage id '" + id + "' repeated at " + where + " (first at " +
                                  it->second + ")");
    }
    return Status::Ok();
  }

 private:
  std::unordered_map<std::string, std::string> seen_;
};

StatusOr<std::vector<CorpusPassage>> ReadJsonl(const std::string& path, std::istream& in,
                                               int64_t limit) {
  std::vector<CorpusPassage> out;
  IdSet ids;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (limit > 0 && int64_t(out.size()) >= limit) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return InvalidArgumentError("malformed JSON object at " + where);
    }
    CorpusPassage p;
    auto id = j.find("id");
    if (id == j.end()) return InvalidArgumentError("missing \"id\" at " + where);
    if (id->is_string()) {
      p.id = id->get<std::string>();
    } else if (id->is_number_integer()) {
      p.id = std::to_string(id->get<int64_t>());
    } else {
      return InvalidArgumentError("\"id\" is not a string or integer at " + where);
    }
    auto text = j.find("text");
    if (text == j.end() || !text->is_string()) {
      return InvalidArgumentError("missing or non-string \"text\" at " + where);
    }
    p.text = text->get<std::string>();
    auto title = j.find("title");
    if (title != j.end() && !title->is_null()) {
      if (!title->is_string()) return InvalidArgumentError("non-string \"title\" at " + where);
      p.title = title->get<std::string>();
    }
    RETURN_IF_ERROR(ids.Add(p.id, where));
    out.push_back(std::move(p));
  }
  return out;
}

StatusOr<std::vector<CorpusPassage>> ReadSquad(const std::string& path, std::istream& in,
                                               int64_t limit) {
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError("malformed JSON in " + path);
  auto data = j.find("data");
  if (!j.is_object() || data == j.end() || !data->is_array()) {
    return InvalidArgumentError(path + " is not SQuAD JSON: no \"data\" array");
  }
  std::vector<CorpusPassage> out;
  IdSet ids;
  for (size_t a = 0; a < data->size(); ++a) {
    const json& article = (*data)[a];
    const std::string where_a = path + " data[" + std::to_string(a) + "]";
    if (!article.is_object()) return InvalidArgumentError(where_a + " is not an object");
    auto title = article.find("title");
    auto paragraphs = article.find("paragraphs");
    if (title == article.end() || !title->is_string()) {
      return InvalidArgumentError("missing or non-string \"title\" in " + where_a);
    }
    if (paragraphs == article.end() || !paragraphs->is_array()) {
      return InvalidArgumentError("missing \"paragraphs\" array in " + where_a);
    }
    const std::string page = title->get<std::string>();
    std::string display = page;
    for (char& c : display) c = (c == '_') ? ' ' : c;
    for (size_t p = 0; p < paragraphs->size(); ++p) {
      if (limit > 0 && int64_t(out.size()) >= limit) return out;
      const json& para = (*paragraphs)[p];
      const std::string where = where_a + ".paragraphs[" + std::to_string(p) + "]";
      auto context = para.is_object() ? para.find("context") : para.end();
      if (!para.is_object() || context == para.end() || !context->is_string()) {
        return InvalidArgumentError("missing or non-string \"context\" in " + where);
      }
      CorpusPassage passage{page + "/" + std::to_string(p), display, context->get<std::string>()};
      RETURN_IF_ERROR(ids.Add(passage.id, where));
      out.push_back(std::move(passage));
    }
  }
  return out;
}

}  // namespace

StatusOr<CorpusFormat> ParseCorpusFormat(const std::string& name) {
  if (name == "auto") return CorpusFormat::kAuto;
  if (name == "jsonl") return CorpusFormat::kJsonl;
  if (name == "squad") return CorpusFormat::kSquad;
  return InvalidArgumentError("corpus format must be auto|jsonl|squad, got '" + name + "'");
}

StatusOr<std::vector<CorpusPassage>> ReadCorpus(const std::string& path, CorpusFormat format,
                                                int64_t limit) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError("corpus file " + path + " does not exist");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open corpus file " + path);
  if (format == CorpusFormat::kAuto) {
    format = EndsWith(path, ".json") ? CorpusFormat::kSquad : CorpusFormat::kJsonl;
  }
  return format == CorpusFormat::kSquad ? ReadSquad(path, in, limit) : ReadJsonl(path, in, limit);
}

StatusOr<std::vector<CorpusPassage>> WindowPassages(const std::vector<CorpusPassage>& passages,
                                                    int64_t words, int64_t stride) {
  if (words < 1 || stride < 1 || stride > words) {
    return InvalidArgumentError("window of " + std::to_string(words) + " words with stride " +
                                std::to_string(stride) + ": need 1 <= stride <= words");
  }
  std::vector<CorpusPassage> out;
  std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) of each word in the text
  for (const CorpusPassage& p : passages) {
    spans.clear();
    for (size_t i = 0; i < p.text.size();) {
      while (i < p.text.size() && std::isspace(static_cast<unsigned char>(p.text[i]))) ++i;
      if (i == p.text.size()) break;
      const size_t begin = i;
      while (i < p.text.size() && !std::isspace(static_cast<unsigned char>(p.text[i]))) ++i;
      spans.emplace_back(begin, i);
    }
    const int64_t n = static_cast<int64_t>(spans.size());
    auto emit = [&](int64_t first) {
      const int64_t last = std::min(first + words, n) - 1;
      out.push_back({p.id + "#w" + std::to_string(first), p.title,
                     p.text.substr(spans[first].first, spans[last].second - spans[first].first)});
    };
    int64_t first = 0;
    for (; first + words < n; first += stride) emit(first);
    if (n > 0) emit(std::max<int64_t>(0, n - words));
  }
  return out;
}

}  // namespace memoria

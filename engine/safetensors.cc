#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace memoria {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little endian; this reader maps it without byte swapping");

// The Hugging Face reference implementation refuses headers above 100 MB; so do we, which also
// bounds the memory a hostile header length can make us spend on parsing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A valid header nests at most 3 deep (root / tensor entry / shape array); anything deeper is
// rejected before parsing so that a header of a million '[' cannot cost a deep parse.
constexpr int kMaxHeaderDepth = 8;

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return NotFoundError(message);
    case EACCES:
    case EPERM:
      return Status(StatusCode::kPermissionDenied, message);
    default:
      return InternalError(message);
  }
}

// Nesting depth of a JSON text, counting brackets outside string literals.
int JsonNestingDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

StatusOr<DType> ParseDType(const std::string& name, const std::string& context) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return InvalidArgumentError(context + ": unsupported dtype '" + name +
                              "' (supported: F32, F16, BF16)");
}

const char* SafetensorsDTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

// A non-negative JSON integer that fits in int64, or an error naming `what`.
StatusOr<int64_t> NonNegativeInt(const nlohmann::json& v, const std::string& what) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      return DataLossError(what + " " + std::to_string(u) + " is too large");
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return DataLossError(what + " " + std::to_string(i) + " is negative");
    return i;
  }
  if (v.is_number()) return DataLossError(what + " is not an integer: " + v.dump());
  return DataLossError(what + " is a JSON " + std::string(v.type_name()) + ", expected an integer");
}

struct Span {
  int64_t begin;
  int64_t end;
  const std::string* name;
};

}  // namespace

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgumentError(path + " is not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return DataLossError(path + ": file is " + std::to_string(file_size) +
                         " bytes, too short for the 8-byte header length");
  }
  void* map = mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
  int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) return ErrnoStatus("cannot mmap", path, map_errno);
  file->map_ = map;
  file->map_size_ = file_size;
  const auto* bytes = static_cast<const unsigned char*>(map);

  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > file_size - 8) {
    return DataLossError(path + ": header length " + std::to_string(header_len) +
                         " exceeds the " + std::to_string(file_size - 8) +
                         " bytes after the length field (file size " + std::to_string(file_size) +
                         ")");
  }
  if (header_len > kMaxHeaderBytes) {
    return DataLossError(path + ": header length " + std::to_string(header_len) +
                         " exceeds the limit of " + std::to_string(kMaxHeaderBytes) + " bytes");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  const unsigned char* data = bytes + 8 + header_len;
  const int64_t data_size = static_cast<int64_t>(file_size - 8 - header_len);

  if (int depth = JsonNestingDepth(header); depth > kMaxHeaderDepth) {
    return DataLossError(path + ": header JSON nests " + std::to_string(depth) +
                         " levels deep, more than the " + std::to_string(kMaxHeaderDepth) +
                         " a safetensors header can need");
  }
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(header.begin(), header.end());
  } catch (const nlohmann::json::parse_error& e) {
    return DataLossError(path + ": header (" + std::to_string(header_len) +
                         " bytes) is not valid JSON at byte " + std::to_string(e.byte) + ": " +
                         e.what());
  } catch (const nlohmann::json::exception& e) {
    // A number that overflows a double (1e400) is reported as out_of_range, not a parse error.
    return DataLossError(path + ": header (" + std::to_string(header_len) +
                         " bytes) is not valid JSON: " + e.what());
  }
  if (!root.is_object()) {
    return DataLossError(path + ": header is a JSON " + std::string(root.type_name()) +
                         ", expected an object");
  }

  std::vector<Span> spans;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return DataLossError(path + ": __metadata__ is a JSON " + std::string(entry.type_name()) +
                             ", expected an object of strings");
      }
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return DataLossError(path + ": __metadata__ value for '" + m.key() +
                               "' is not a string");
        }
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string ctx = path + ": tensor '" + name + "'";
    if (!entry.is_object()) {
      return DataLossError(ctx + " entry is a JSON " + std::string(entry.type_name()) +
                           ", expected an object");
    }
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return DataLossError(ctx + " has no string 'dtype'");
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return DataLossError(ctx + " has no array 'shape'");
    }
    if (offsets_it == entry.end() || !offsets_it->is_array()) {
      return DataLossError(ctx + " has no array 'data_offsets'");
    }
    TensorView view;
    view.name = name;
    ASSIGN_OR_RETURN(view.dtype, ParseDType(dtype_it->get<std::string>(), ctx));

    int64_t num_bytes = DTypeSize(view.dtype);
    for (size_t i = 0; i < shape_it->size(); ++i) {
      ASSIGN_OR_RETURN(int64_t d,
                       NonNegativeInt((*shape_it)[i], ctx + " shape[" + std::to_string(i) + "]"));
      view.shape.push_back(d);
      if (__builtin_mul_overflow(num_bytes, d, &num_bytes)) {
        return DataLossError(ctx + " shape " + ShapeToString(view.shape) +
                             "... overflows a 64-bit byte count");
      }
    }
    if (offsets_it->size() != 2) {
      return DataLossError(ctx + " data_offsets has " + std::to_string(offsets_it->size()) +
                           " entries, expected 2");
    }
    ASSIGN_OR_RETURN(int64_t begin, NonNegativeInt((*offsets_it)[0], ctx + " data_offsets[0]"));
    ASSIGN_OR_RETURN(int64_t end, NonNegativeInt((*offsets_it)[1], ctx + " data_offsets[1]"));
    if (end < begin) {
      return DataLossError(ctx + " data_offsets [" + std::to_string(begin) + ", " +
                           std::to_string(end) + "] end before begin");
    }
    if (end > data_size) {
      return DataLossError(ctx + " data_offsets [" + std::to_string(begin) + ", " +
                           std::to_string(end) + "] run past the " + std::to_string(data_size) +
                           "-byte data section (file truncated?)");
    }
    if (end - begin != num_bytes) {
      return DataLossError(ctx + " data_offsets [" + std::to_string(begin) + ", " +
                           std::to_string(end) + "] hold " + std::to_string(end - begin) +
                           " bytes, but " + SafetensorsDTypeName(view.dtype) + " " +
                           ShapeToString(view.shape) + " needs " + std::to_string(num_bytes));
    }
    view.data = data + begin;
    auto [pos, inserted] = file->tensors_.emplace(name, std::move(view));
    if (num_bytes > 0) spans.push_back({begin, end, &pos->first});
  }

  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) {
      return DataLossError(path + ": tensors '" + *spans[i - 1].name + "' [" +
                           std::to_string(spans[i - 1].begin) + ", " +
                           std::to_string(spans[i - 1].end) + ") and '" + *spans[i].name +
                           "' [" + std::to_string(spans[i].begin) + ", " +
                           std::to_string(spans[i].end) + ") overlap");
    }
  }
  return file;
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the tensors in the caller's order, which is also the data order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return InvalidArgumentError("cannot write a tensor named '" + t.name + "' to " + path);
    }
    if (header.contains(t.name)) {
      return InvalidArgumentError("tensor '" + t.name + "' given twice for " + path);
    }
    int64_t n = DTypeSize(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) {
        return InvalidArgumentError("tensor '" + t.name + "' has invalid shape " +
                                    ShapeToString(t.shape));
      }
    }
    if (n > 0 && t.data == nullptr) {
      return InvalidArgumentError("tensor '" + t.name + "' has no data");
    }
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = SafetensorsDTypeName(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + n};
    header[t.name] = std::move(entry);
    offset += n;
    sizes.push_back(n);
  }
  std::string header_text = header.dump();
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned.
  while ((8 + header_text.size()) % 8 != 0) header_text.push_back(' ');

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return ErrnoStatus("cannot create", tmp, errno);
  uint64_t header_len = header_text.size();
  bool ok = std::fwrite(&header_len, 8, 1, f) == 1 &&
            std::fwrite(header_text.data(), 1, header_text.size(), f) == header_text.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i) {
    if (sizes[i] > 0) {
      ok = std::fwrite(tensors[i].data, 1, sizes[i], f) == static_cast<size_t>(sizes[i]);
    }
  }
  int err = errno;
  if (std::fflush(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && fsync(fileno(f)) != 0) {
    ok = false;
    err = errno;
  }
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return ErrnoStatus("cannot write", tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return ErrnoStatus("cannot rename " + tmp + " to", path, err);
  }
  return Status::Ok();
}

}  // namespace memoria

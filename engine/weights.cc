#include "engine/weights.h"

#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "kernels/gemm.h"

namespace memoria {
namespace {

constexpr uint64_t kP1 = 11400714785074694791ULL;
constexpr uint64_t kP2 = 14029467366897019727ULL;
constexpr uint64_t kP3 = 1609587929392839161ULL;
constexpr uint64_t kP4 = 9650029242287828579ULL;
constexpr uint64_t kP5 = 2870177450012600261ULL;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t Read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t Read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  return Rotl(acc, 31) * kP1;
}
inline uint64_t MergeRound(uint64_t acc, uint64_t val) {
  acc ^= Round(0, val);
  return acc * kP1 + kP4;
}

constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

void Fnv1a(uint64_t* h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    *h ^= p[i];
    *h *= kFnvPrime;
  }
}
void Fnv1a(uint64_t* h, const std::string& s) { Fnv1a(h, s.data(), s.size() + 1); }  // with NUL

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

uint64_t Xxh64(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
    const unsigned char* const limit = end - 32;
    do {
      v1 = Round(v1, Read64(p));
      v2 = Round(v2, Read64(p + 8));
      v3 = Round(v3, Read64(p + 16));
      v4 = Round(v4, Read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    h = MergeRound(h, v1);
    h = MergeRound(h, v2);
    h = MergeRound(h, v3);
    h = MergeRound(h, v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(len);
  while (p + 8 <= end) {
    h ^= Round(0, Read64(p));
    h = Rotl(h, 27) * kP1 + kP4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(Read32(p)) * kP1;
    h = Rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * kP5;
    h = Rotl(h, 11) * kP1;
    ++p;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

StatusOr<std::unique_ptr<ModelDir>> ModelDir::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<ModelDir> model(new ModelDir());
  model->dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFoundError("model directory " + dir + " does not exist");
  ASSIGN_OR_RETURN(model->config_, JsonConfig::ParseFile(dir + "/config.json"));

  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (fs::exists(index_path, ec)) {
    ASSIGN_OR_RETURN(auto index, JsonConfig::ParseFile(index_path));
    // JsonConfig has no nested-object getter; the index is small, so re-parse it here.
    nlohmann::json root = nlohmann::json::parse(index->text());
    auto map_it = root.find("weight_map");
    if (map_it == root.end() || !map_it->is_object()) {
      return DataLossError(index_path + ": no 'weight_map' object");
    }
    std::map<std::string, std::string> tensor_to_file;
    std::set<std::string> file_names;
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      if (!it.value().is_string() || !IsPlainFileName(it.value().get<std::string>())) {
        return DataLossError(index_path + ": weight_map entry for '" + it.key() +
                             "' is not a plain file name");
      }
      tensor_to_file[it.key()] = it.value().get<std::string>();
      file_names.insert(it.value().get<std::string>());
    }
    if (file_names.empty()) return DataLossError(index_path + ": weight_map is empty");
    std::map<std::string, const SafetensorsFile*> by_name;
    for (const std::string& name : file_names) {
      ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir + "/" + name));
      by_name[name] = file.get();
      model->files_.push_back(std::move(file));
    }
    for (const auto& [tensor, file_name] : tensor_to_file) {
      if (by_name[file_name]->Find(tensor) == nullptr) {
        return DataLossError(index_path + " places tensor '" + tensor + "' in " + file_name +
                             ", which does not contain it");
      }
    }
  } else if (fs::exists(single_path, ec)) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    model->files_.push_back(std::move(file));
  } else {
    return NotFoundError("no model.safetensors or model.safetensors.index.json in " + dir);
  }

  // A name in two shards would make lookups depend on file order: refuse it.
  std::map<std::string, std::string> seen;
  for (const auto& file : model->files_) {
    for (const auto& [name, view] : file->tensors()) {
      auto [it, inserted] = seen.emplace(name, file->path());
      if (!inserted) {
        return DataLossError("tensor '" + name + "' appears in both " + it->second + " and " +
                             file->path());
      }
    }
  }
  return model;
}

const TensorView* ModelDir::Find(const std::string& name) const {
  for (const auto& file : files_) {
    if (const TensorView* v = file->Find(name)) return v;
  }
  return nullptr;
}

bool ModelDir::Has(const std::string& name) const { return Find(name) != nullptr; }

namespace {

Status CheckShape(const std::string& name, const TensorView& view,
                  const std::vector<int64_t>& expected_shape) {
  if (view.shape != expected_shape) {
    return InvalidArgumentError("tensor '" + name + "' has shape " + ShapeToString(view.shape) +
                                ", expected " + ShapeToString(expected_shape));
  }
  return Status::Ok();
}

// A copy of `view` converted to f32, owned by the returned Weight.
Weight ConvertedF32(const TensorView& view) {
  const int64_t n = view.num_elements();
  std::shared_ptr<float[]> buffer(new float[n > 0 ? n : 1]);
  ConvertToF32(view.dtype, view.data, buffer.get(), n);
  Weight w;
  w.dtype = DType::kF32;
  w.shape = view.shape;
  w.data = buffer.get();
  w.owner = std::shared_ptr<const void>(buffer, buffer.get());
  return w;
}

}  // namespace

StatusOr<Weight> ModelDir::GetF32(const std::string& name,
                                  const std::vector<int64_t>& expected_shape) const {
  const TensorView* view = Find(name);
  if (view == nullptr) return NotFoundError("tensor '" + name + "' is missing from " + dir_);
  RETURN_IF_ERROR(CheckShape(name, *view, expected_shape));
  // A file whose header length is not a multiple of 4 leaves f32 data misaligned; kernels load
  // floats directly, so such tensors are copied rather than viewed.
  if (view->dtype == DType::kF32 && reinterpret_cast<uintptr_t>(view->data) % alignof(float) == 0) {
    Weight w;
    w.dtype = DType::kF32;
    w.shape = view->shape;
    w.data = view->data;
    return w;
  }
  return ConvertedF32(*view);
}

StatusOr<Weight> ModelDir::GetMatmulWeight(const std::string& name,
                                           const std::vector<int64_t>& expected_shape) const {
  const TensorView* view = Find(name);
  if (view == nullptr) return NotFoundError("tensor '" + name + "' is missing from " + dir_);
  RETURN_IF_ERROR(CheckShape(name, *view, expected_shape));
  if (view->dtype == DType::kBF16 && WantBf16Weights()) {
    Weight w;
    w.dtype = DType::kBF16;
    w.shape = view->shape;
    if (reinterpret_cast<uintptr_t>(view->data) % alignof(uint16_t) == 0) {
      w.data = view->data;
    } else {
      const int64_t n = view->num_elements();
      std::shared_ptr<uint16_t[]> buffer(new uint16_t[n > 0 ? n : 1]);
      std::memcpy(buffer.get(), view->data, n * sizeof(uint16_t));
      w.data = buffer.get();
      w.owner = std::shared_ptr<const void>(buffer, buffer.get());
    }
    return w;
  }
  return GetF32(name, expected_shape);
}

int64_t ModelDir::total_bytes() const {
  int64_t total = 0;
  for (const auto& file : files_) {
    for (const auto& [name, view] : file->tensors()) total += view.num_bytes();
  }
  return total;
}

uint64_t ModelDir::Fingerprint() const {
  // Tensors in name order, whatever shard holds them, so resharding keeps the fingerprint.
  std::map<std::string, const TensorView*> all;
  for (const auto& file : files_) {
    for (const auto& [name, view] : file->tensors()) all[name] = &view;
  }
  uint64_t h = kFnvOffset;
  Fnv1a(&h, config_->text());
  for (const auto& [name, view] : all) {
    Fnv1a(&h, name);
    Fnv1a(&h, std::string(DTypeName(view->dtype)));
    Fnv1a(&h, ShapeToString(view->shape));
    uint64_t data_hash = Xxh64(view->data, static_cast<size_t>(view->num_bytes()), 0);
    Fnv1a(&h, &data_hash, sizeof(data_hash));
  }
  return h;
}

}  // namespace memoria

// Reading and writing the safetensors format (Hugging Face).
//
// File layout: u64 little-endian N | N bytes of UTF-8 JSON header | raw tensor data.
// Header: {"name": {"dtype": "F32"|"F16"|"BF16", "shape": [..], "data_offsets": [begin, end]},
//          ..., "__metadata__": {"key": "value", ...} (optional)}; offsets are relative to the
// start of the data section, end - begin == prod(shape) * dtype size.
//
// Reading memory-maps the file (read-only, shared); TensorView::data points into the mapping and
// stays valid while the SafetensorsFile lives. Every header field is validated at Open with a
// message that names the file, tensor and numbers; a corrupt file is an error, never a crash:
//   DATA_LOSS        truncated file, header length past the end or above 100 MB (the reference
//                    implementation's limit), bad JSON or JSON nested deeper than a header can
//                    be, a header that is not an object, an entry without dtype/shape/
//                    data_offsets, negative/non-integer shape entries, a shape whose byte size
//                    overflows 64 bits, offsets out of range or end < begin, a byte range that
//                    is not prod(shape) * dtype size, overlapping tensors, non-string metadata
//   INVALID_ARGUMENT unsupported dtype (only F32, F16, BF16 are read)
//   NOT_FOUND        file missing
// Unused bytes between tensors are allowed (the format does not need them, but they are
// harmless); only overlaps are corruption.
//
// Thread-safety: a SafetensorsFile is immutable after Open.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kernels/dtype.h"

namespace memoria {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // into the mapping; aligned only as the file aligns it
  int64_t num_elements() const;
  int64_t num_bytes() const { return num_elements() * DTypeSize(dtype); }
};

// "[512, 64]"
std::string ShapeToString(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // nullptr when absent.
  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: data holds num_elements * DTypeSize(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file (tensors in the given order, data 8-byte aligned via header padding).
// Writes to path + ".tmp", fsyncs and renames, so a crash never leaves a half-written file at
// `path`. INVALID_ARGUMENT for an empty, reserved ("__metadata__") or repeated name, a negative
// shape or missing data; NOT_FOUND when the directory does not exist; INTERNAL on I/O errors.
Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

}  // namespace memoria

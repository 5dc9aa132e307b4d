// Safetensors files (engine/safetensors.h) from arbitrary bytes: model weights and imported PQ
// codebooks come from outside. Open must reject every malformed file with a Status; an accepted
// file must describe tensors that lie inside it, so reading all of their bytes is safe.
#include <cstring>
#include <vector>

#include "engine/safetensors.h"
#include "fuzz/fuzz_target.h"

MEMORIA_FUZZ_TARGET(Safetensors) {
  const MemFile file(data, size);
  auto opened = SafetensorsFile::Open(file.path());
  if (!opened.ok()) {
    const StatusCode code = opened.status().code();
    FUZZ_CHECK(code == StatusCode::kDataLoss || code == StatusCode::kInvalidArgument);
    return 0;
  }
  const SafetensorsFile& st = **opened;
  int64_t total_bytes = 0;
  for (const auto& [name, view] : st.tensors()) {
    FUZZ_CHECK(view.name == name);
    FUZZ_CHECK(st.Find(name) == &view);
    FUZZ_CHECK(view.num_elements() >= 0);
    const int64_t bytes = view.num_bytes();
    // Tensors do not overlap, so together they fit in the data section.
    total_bytes += bytes;
    FUZZ_CHECK(bytes >= 0 && total_bytes <= static_cast<int64_t>(size));
    // Reads every byte of the tensor: a view pointing outside the mapping faults here.
    std::vector<float> values(static_cast<size_t>(view.num_elements()));
    ConvertToF32(view.dtype, view.data, values.data(), view.num_elements());
  }
  // The metadata entry is not a tensor.
  FUZZ_CHECK(st.Find("__metadata__") == nullptr);
  return 0;
}

// Run-time CPU feature detection (CPUID), for ISA dispatch inside .cc files.
#pragma once

namespace memoria {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
};

// Detected once, then cached. Thread-safe.
const CpuFeatures& GetCpuFeatures();

}  // namespace memoria

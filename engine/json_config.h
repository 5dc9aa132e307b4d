// Typed, validated access to a JSON object (a model's config.json).
//
// Getters with a default return it when the key is absent; a present key of the wrong type is an
// INVALID_ARGUMENT naming the key, the file and the expected type. A key whose value is JSON null
// counts as absent (Hugging Face writes null for "use the default", e.g. "rope_scaling": null).
// Integers are exact: 2.0 is not an integer; GetDouble accepts any number.
//
// Immutable after parsing; safe to read from several threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace memoria {

class JsonConfig {
 public:
  // Parses the file; NOT_FOUND if missing, INVALID_ARGUMENT (with line/column) on bad JSON or a
  // top level that is not an object.
  static StatusOr<std::unique_ptr<JsonConfig>> ParseFile(const std::string& path);
  static StatusOr<std::unique_ptr<JsonConfig>> ParseString(const std::string& text,
                                                           const std::string& source_name);
  ~JsonConfig();

  // True when the key is present with a non-null value.
  bool Has(const std::string& key) const;
  // True when the key is present with the value null (HF writes "rope_scaling": null).
  bool IsNull(const std::string& key) const;
  StatusOr<int64_t> GetInt(const std::string& key) const;  // NOT_FOUND if absent
  StatusOr<int64_t> GetInt(const std::string& key, int64_t default_value) const;
  StatusOr<double> GetDouble(const std::string& key) const;
  StatusOr<double> GetDouble(const std::string& key, double default_value) const;
  StatusOr<bool> GetBool(const std::string& key, bool default_value) const;
  StatusOr<std::string> GetString(const std::string& key) const;
  StatusOr<std::string> GetString(const std::string& key, const std::string& default_value) const;
  // Integer list, or a single integer read as a one-element list (e.g. "eos_token_id").
  StatusOr<std::vector<int64_t>> GetIntList(const std::string& key) const;
  const std::string& source_name() const { return source_name_; }
  std::string text() const;  // serialised form (for fingerprints)

 private:
  JsonConfig();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string source_name_;
};

}  // namespace memoria

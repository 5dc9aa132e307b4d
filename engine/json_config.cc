#include "engine/json_config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace memoria {

struct JsonConfig::Impl {
  nlohmann::json root;
  // The value for `key`, or nullptr when absent or JSON null (Hugging Face writes null for
  // "use the default", e.g. "rope_scaling": null).
  const nlohmann::json* Lookup(const std::string& key) const {
    auto it = root.find(key);
    if (it == root.end() || it->is_null()) return nullptr;
    return &*it;
  }
};

JsonConfig::JsonConfig() : impl_(std::make_unique<Impl>()) {}
JsonConfig::~JsonConfig() = default;

StatusOr<std::unique_ptr<JsonConfig>> JsonConfig::ParseFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT) return NotFoundError("config file " + path + " does not exist");
    return InvalidArgumentError("cannot read config file " + path + ": " + std::strerror(err));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return InvalidArgumentError("error reading config file " + path);
  return ParseString(buffer.str(), path);
}

StatusOr<std::unique_ptr<JsonConfig>> JsonConfig::ParseString(const std::string& text,
                                                              const std::string& source_name) {
  std::unique_ptr<JsonConfig> config(new JsonConfig());
  config->source_name_ = source_name;
  try {
    config->impl_->root = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    size_t end = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    int line = 1, column = 1;
    for (size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return InvalidArgumentError(source_name + ": invalid JSON at line " + std::to_string(line) +
                                ", column " + std::to_string(column) + ": " + e.what());
  } catch (const nlohmann::json::exception& e) {
    // The parser reports a number that overflows a double (1e400) as out_of_range, not as a
    // parse error.
    return InvalidArgumentError(source_name + ": invalid JSON: " + e.what());
  }
  if (!config->impl_->root.is_object()) {
    return InvalidArgumentError(source_name + ": top level is a JSON " +
                                std::string(config->impl_->root.type_name()) +
                                ", expected an object");
  }
  return config;
}

bool JsonConfig::Has(const std::string& key) const { return impl_->Lookup(key) != nullptr; }

bool JsonConfig::IsNull(const std::string& key) const {
  auto it = impl_->root.find(key);
  return it != impl_->root.end() && it->is_null();
}

namespace {

Status WrongType(const std::string& source, const std::string& key, const nlohmann::json& v,
                 const char* expected) {
  std::string shown = v.dump(-1, ' ', /*ensure_ascii=*/true);
  if (shown.size() > 64) shown = shown.substr(0, 61) + "...";
  return InvalidArgumentError(source + ": '" + key + "' is a JSON " + std::string(v.type_name()) +
                              " (" + shown + "), expected " + expected);
}

StatusOr<int64_t> ToInt(const std::string& source, const std::string& key,
                        const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidArgumentError(source + ": '" + key + "' = " + std::to_string(u) +
                                  " does not fit in a 64-bit signed integer");
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return WrongType(source, key, v, "an integer");
}

}  // namespace

StatusOr<int64_t> JsonConfig::GetInt(const std::string& key) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return NotFoundError(source_name_ + ": missing integer '" + key + "'");
  return ToInt(source_name_, key, *v);
}

StatusOr<int64_t> JsonConfig::GetInt(const std::string& key, int64_t default_value) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return default_value;
  return ToInt(source_name_, key, *v);
}

StatusOr<double> JsonConfig::GetDouble(const std::string& key) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return NotFoundError(source_name_ + ": missing number '" + key + "'");
  if (!v->is_number()) return WrongType(source_name_, key, *v, "a number");
  return v->get<double>();
}

StatusOr<double> JsonConfig::GetDouble(const std::string& key, double default_value) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return default_value;
  if (!v->is_number()) return WrongType(source_name_, key, *v, "a number");
  return v->get<double>();
}

StatusOr<bool> JsonConfig::GetBool(const std::string& key, bool default_value) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return default_value;
  if (!v->is_boolean()) return WrongType(source_name_, key, *v, "a boolean");
  return v->get<bool>();
}

StatusOr<std::string> JsonConfig::GetString(const std::string& key) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return NotFoundError(source_name_ + ": missing string '" + key + "'");
  if (!v->is_string()) return WrongType(source_name_, key, *v, "a string");
  return v->get<std::string>();
}

StatusOr<std::string> JsonConfig::GetString(const std::string& key,
                                            const std::string& default_value) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return default_value;
  if (!v->is_string()) return WrongType(source_name_, key, *v, "a string");
  return v->get<std::string>();
}

StatusOr<std::vector<int64_t>> JsonConfig::GetIntList(const std::string& key) const {
  const nlohmann::json* v = impl_->Lookup(key);
  if (v == nullptr) return NotFoundError(source_name_ + ": missing integer list '" + key + "'");
  std::vector<int64_t> out;
  if (!v->is_array()) {
    ASSIGN_OR_RETURN(int64_t single, ToInt(source_name_, key, *v));
    out.push_back(single);
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    ASSIGN_OR_RETURN(int64_t x, ToInt(source_name_, key + "[" + std::to_string(i) + "]", (*v)[i]));
    out.push_back(x);
  }
  return out;
}

std::string JsonConfig::text() const {
  // nlohmann::json keeps object keys sorted, so this is canonical: the same settings give the
  // same text whatever the file's key order and whitespace.
  return impl_->root.dump();
}

}  // namespace memoria

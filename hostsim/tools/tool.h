// Internal to the `capmem` host tool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "capmem/datacap.h"
#include "capmem/types.h"

namespace capmem::tool {

inline constexpr std::uint64_t kProgressThreshold = 64ull << 20;  // progress bar above 64 MiB

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  bool open(const char* path, std::string* err);
  [[nodiscard]] const std::uint8_t* data() const { return data_; }
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

class OutFile {
 public:
  explicit OutFile(const char* path);
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile();
  bool open(std::string* err);
  bool write(const void* p, std::size_t n, std::string* err);
  bool commit(std::string* err);

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

class Progress {
 public:
  Progress(const char* what, std::uint64_t total);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();
  void update(std::uint64_t done);
  // Feeds this bar from a core build (DataCap::from_bytes / decode).
  BuildProgress sink() {
    return BuildProgress{.report = [](void* self, std::uint64_t done) { static_cast<Progress*>(self)->update(done); },
                         .ctx = this};
  }

 private:
  const char* what_;
  std::uint64_t total_;
  bool on_;
  bool shown_ = false;
  int last_ = -1;
};

void boot_for(std::uint64_t bytes);
int fail(const std::string& msg);
std::string hex(const Hash32& h);

int cmd_root(int argc, char** argv);
int cmd_encode(int argc, char** argv);
int cmd_decode(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_demo(int argc, char** argv);

}  // namespace capmem::tool

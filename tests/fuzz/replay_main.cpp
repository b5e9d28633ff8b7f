// Replays fuzz inputs through a libFuzzer target built with the ordinary compiler (g++ in
// build/, ASan+UBSan in build-asan/), so the seeds and every input that once failed are
// checked by `meson test` even where clang's libFuzzer is not installed.
//   replay-<target> DIR... : runs LLVMFuzzerTestOneInput on every file of each DIR (a DIR
//   that does not exist is skipped); a failed property aborts with the target's message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
// Targets with a custom mutator call libFuzzer's; replaying never mutates.
extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* /*data*/, std::size_t size, std::size_t /*max*/) { return size; }

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  std::size_t n = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path dir(argv[i]);
    if (!std::filesystem::is_directory(dir)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (LLVMFuzzerTestOneInput(bytes.data(), bytes.size()) != 0) {
        std::fprintf(stderr, "replay: %s: target returned non-zero\n", f.c_str());
        return 1;
      }
      ++n;
    }
  }
  std::printf("replay: %zu inputs ok\n", n);
  return n == 0 ? 1 : 0;  // no input at all means the paths are wrong
}

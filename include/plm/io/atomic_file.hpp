#pragma once
// File access shared by the io formats.
//
// AtomicFile replaces a file atomically: everything is written to a temporary
// file in the target's directory, flushed to disk, and only then renamed over
// the target. rename() within one file system is atomic, so a reader, or the
// machine after a crash, sees either the old file or the complete new one,
// never a prefix of a checkpoint. The temporary file is removed on any failure.
// Only regular files are written: a target that is a device (/dev/full), a
// directory, a FIFO or a socket is refused before anything is written, because
// renaming over it would replace the node with a file. A symbolic link is
// followed: the file it points to is replaced and the link is kept. Every
// write, the fsync and the close are checked; commit() throws when any failed,
// and the target is then untouched.
//
// detail::InputFile reads with positional reads (pread), so several threads may
// read tensors of one file at the same time without sharing a file position.
//
// POSIX only (open, pread, fsync, rename).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "plm/core/error.hpp"

namespace plm::io {

namespace detail {

inline std::string errno_message(int err) { return std::error_code(err, std::generic_category()).message(); }

// Read-only file opened for positional reads; closed on destruction.
class InputFile {
 public:
  // `what` prefixes every error ("safetensors", "config"), followed by the path.
  InputFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {
    int fd;
    do {
      fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) fail_errno("cannot open");
    struct stat st {};
    const int stat_result = ::fstat(fd, &st);
    const int err = errno;
    if (stat_result != 0 || S_ISDIR(st.st_mode)) {
      ::close(fd);
      // open() succeeds on a directory, and reads would then fail with a less helpful message.
      if (stat_result != 0) fail("cannot stat: " + errno_message(err));
      fail("is a directory");
    }
    fd_ = fd;
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads exactly n bytes at `offset`; a short read means the file shrank or lied
  // about its size, and is an error.
  void read_at(void* dst, std::uint64_t n, std::uint64_t offset) const {
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      // Bounded chunks: some kernels cap a single read at about 2 GiB.
      const std::size_t chunk = static_cast<std::size_t>(n < (std::uint64_t{1} << 30) ? n : (std::uint64_t{1} << 30));
      const ::ssize_t got = ::pread(fd_, p, chunk, static_cast<::off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        fail_errno("read failed");
      }
      if (got == 0) fail("unexpected end of file at byte " + std::to_string(offset) + " (was it truncated?)");
      p += got, n -= static_cast<std::uint64_t>(got), offset += static_cast<std::uint64_t>(got);
    }
  }

  // The whole file as a string (small files only: configs).
  std::string read_all() const {
    std::string s(static_cast<std::size_t>(size_), '\0');
    if (size_ > 0) read_at(s.data(), size_, 0);
    return s;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { PLM_FAIL(what_, ": ", path_, ": ", what); }
  [[noreturn]] void fail_errno(const char* what) const {
    const int err = errno;
    fail(std::string(what) + ": " + errno_message(err));
  }

  std::string path_, what_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// "a directory", "a character device", ...: what a non-regular file is, for errors.
inline const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

// The file a write to `path` replaces: `path` itself, or where a symbolic link
// points. Throws unless that is a regular file or does not exist yet.
inline std::string regular_write_target(const std::string& path, const std::string& what = "io") {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    const int err = errno;
    PLM_CHECK(err == ENOENT, what, ": ", path, ": cannot inspect the output path: ", errno_message(err));
    return path;  // a new file
  }
  std::string target = path;
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    const auto resolved = std::filesystem::weakly_canonical(path, ec);
    PLM_CHECK(!ec, what, ": ", path, ": cannot resolve the symbolic link: ", ec.message());
    target = resolved.string();
    if (::stat(target.c_str(), &st) != 0) {
      const int err = errno;
      PLM_CHECK(err == ENOENT, what, ": ", path, ": cannot inspect ", target, ": ", errno_message(err));
      return target;  // a link to a file not created yet
    }
  }
  PLM_CHECK(S_ISREG(st.st_mode), what, ": ", path, (target == path ? "" : " (-> " + target + ")"), " is ", file_kind(st.st_mode),
            "; plm writes only regular files (give a file path)");
  return target;
}

// A name next to `path` that no other writer (thread or process) picks: the pid,
// a process-wide counter and the clock; open(O_EXCL) settles any remaining clash.
inline std::string temp_name_for(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  const auto ticks = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1)) + "." +
         std::to_string(ticks);
}

}  // namespace detail

// Writes a file atomically: write() the contents, then commit(). Destroying an
// AtomicFile that was not committed (an exception on the way) removes the
// temporary file and leaves the target untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    PLM_CHECK(!path_.empty(), "io: cannot write to an empty path");
    target_ = detail::regular_write_target(path_);
    for (int attempt = 0; fd_ < 0; ++attempt) {
      temp_ = detail::temp_name_for(target_);
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      const int err = errno;
      if (fd_ < 0 && !((err == EEXIST && attempt < 100) || err == EINTR))
        PLM_FAIL("io: ", path_, ": cannot create temporary file ", temp_, ": ", detail::errno_message(err));
    }
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

  void write(const void* data, std::uint64_t n) {
    PLM_CHECK(fd_ >= 0 && !committed_, "io: ", path_, ": write after commit");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const std::size_t chunk = static_cast<std::size_t>(n < (std::uint64_t{1} << 30) ? n : (std::uint64_t{1} << 30));
      const ::ssize_t put = ::write(fd_, p, chunk);
      if (put < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        // ENOSPC (disk full), EFBIG, EIO, ...: the message says which.
        PLM_FAIL("io: ", path_, ": write failed: ", detail::errno_message(err));
      }
      p += put, n -= static_cast<std::uint64_t>(put);
    }
  }
  void write(const std::string& s) { write(s.data(), s.size()); }

  // Flushes the data to disk, then renames the temporary file over the target.
  // The fsync comes first so that the rename can never be persisted before the
  // contents it points to.
  void commit() {
    PLM_CHECK(fd_ >= 0 && !committed_, "io: ", path_, ": commit called twice");
    if (::fsync(fd_) != 0) fail_errno("fsync failed");
    const int fd = fd_;
    fd_ = -1;
    // Network file systems may report deferred write errors only here.
    if (::close(fd) != 0) fail_errno("close failed");
    // Again at the last moment: the path may have become a device or directory while we wrote.
    if (detail::regular_write_target(path_) != target_) PLM_FAIL("io: ", path_, ": the output path changed while it was written");
    if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
      const int err = errno;
      PLM_FAIL("io: ", path_, ": cannot rename ", temp_, " over it: ", detail::errno_message(err));
    }
    committed_ = true;
    sync_directory();
  }

 private:
  // Makes the rename itself durable. Best effort: some file systems refuse fsync
  // on a directory, and the file is complete and in place either way.
  void sync_directory() const {
    std::filesystem::path dir = std::filesystem::path(target_).parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    (void)::fsync(dfd);
    ::close(dfd);
  }

  [[noreturn]] void fail_errno(const char* what) const {
    const int err = errno;
    PLM_FAIL("io: ", path_, ": ", what, ": ", detail::errno_message(err));
  }

  std::string path_, target_, temp_;  // target_: path_ with a symbolic link resolved
  int fd_ = -1;
  bool committed_ = false;
};

// For a program's output option (`option`: "--out"): checks before any work is
// done that `path` can be written as a regular file, and refuses a file that
// already exists unless `overwrite` (the user's explicit --overwrite), so a
// finished result is never replaced by accident.
inline void check_new_output(const std::string& path, bool overwrite, const std::string& option) {
  PLM_CHECK(!path.empty(), option, ": empty path");
  const std::string target = detail::regular_write_target(path, option);
  std::error_code ec;
  const bool exists = std::filesystem::exists(target, ec);
  PLM_CHECK(!exists || overwrite, option, " ", path, " already exists; add --overwrite to replace it, or choose another path");
  const std::filesystem::path dir = std::filesystem::path(target).parent_path();
  if (!dir.empty()) {
    PLM_CHECK(std::filesystem::is_directory(dir, ec), option, " ", path, ": the directory ", dir.string(), " does not exist");
    PLM_CHECK(::access(dir.c_str(), W_OK) == 0, option, " ", path, ": the directory ", dir.string(), " is not writable");
  }
}

// Flushes standard output and throws if anything written to it was lost (a
// full disk behind a redirection, /dev/full), so a program can exit non-zero.
inline void flush_stdout() {
  errno = 0;
  const bool failed = std::fflush(stdout) != 0 || std::ferror(stdout);
  const int err = errno;
  PLM_CHECK(!failed, "io: standard output: write failed", err ? ": " + detail::errno_message(err) : std::string());
}

// Calls fill(AtomicFile&) and commits; on an exception the target is untouched.
template <class F>
void write_file_atomically(const std::string& path, F&& fill) {
  AtomicFile f(path);
  fill(f);
  f.commit();
}

}  // namespace plm::io

#pragma once
// The bytes of a file, plain or gzip-compressed, read in chunks.
//
// A file that starts with the gzip magic (1f 8b) is inflated member by member
// (zlib's inflate, not gzread): concatenated members (bgzip, `cat a.gz b.gz`)
// are read whole, and everything else about the container is an error, never a
// silent end of data:
//   - a member cut short (a truncated download, a missing CRC/length trailer),
//   - corrupt deflate data or a failed CRC check,
//   - bytes after the last complete member that are not another member
//     (trailing text, zero padding, a second member cut to one byte).
// gzread would pass the last two as a normal end of file. Any other file is
// passed through unchanged.
//
// Errors come back as a status with a message (read() < 0, error()), so the
// reader that owns the source can add its own context (the line it was on).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace plm::data::detail {

class ByteSource {
 public:
  ByteSource() = default;
  ~ByteSource() { close(); }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Opens `path` (closing any file open before); false with error() set on failure.
  bool open(const std::string& path, std::size_t buffer_bytes = std::size_t{1} << 18) {
    close();
    error_.clear();
    do {
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) return fail_errno("cannot open");
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return fail_errno("cannot stat");
    if (S_ISDIR(st.st_mode)) return fail_open("is a directory");
    // No larger than the file needs: a small file costs a small buffer (at least 4 KiB, which the magic check relies on).
    const auto file_bytes = static_cast<std::uint64_t>(st.st_size);
    std::size_t want = buffer_bytes;
    if (S_ISREG(st.st_mode) && file_bytes < want) want = static_cast<std::size_t>(file_bytes);
    in_.resize(want < 4096 ? 4096 : want);
    in_pos_ = in_end_ = 0;
    consumed_ = 0;
    eof_ = false;
    members_ = 0;
    in_member_ = false;
    // Two bytes decide the format; a file of fewer bytes is plain.
    while (in_end_ < 2 && !eof_)
      if (!refill()) return false;
    gzip_ = in_end_ >= 2 && static_cast<unsigned char>(in_[0]) == 0x1f && static_cast<unsigned char>(in_[1]) == 0x8b;
    if (gzip_) {
      std::memset(&zs_, 0, sizeof zs_);
      if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) return fail_open("zlib: cannot initialise inflate");
      zs_open_ = true;
    }
    return true;
  }

  bool is_gzip() const { return gzip_; }
  // Why the last open() or read() failed.
  const std::string& error() const { return error_; }

  // Up to n bytes of (decompressed) data into dst: the count, 0 at the end of
  // the data, -1 on an error (error() says which).
  std::ptrdiff_t read(char* dst, std::size_t n) {
    if (fd_ < 0 || n == 0) return 0;
    return gzip_ ? read_gzip(dst, n) : read_plain(dst, n);
  }

  void close() {
    if (zs_open_) inflateEnd(&zs_);
    zs_open_ = false;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  std::ptrdiff_t read_plain(char* dst, std::size_t n) {
    if (in_pos_ == in_end_) {
      if (eof_) return 0;
      if (!refill()) return -1;
      if (in_pos_ == in_end_) return 0;
    }
    const std::size_t k = n < in_end_ - in_pos_ ? n : in_end_ - in_pos_;
    std::memcpy(dst, in_.data() + in_pos_, k);
    in_pos_ += k;
    return static_cast<std::ptrdiff_t>(k);
  }

  std::ptrdiff_t read_gzip(char* dst, std::size_t n) {
    const unsigned out_size = static_cast<unsigned>(n < (std::size_t{1} << 30) ? n : (std::size_t{1} << 30));
    zs_.next_out = reinterpret_cast<Bytef*>(dst);
    zs_.avail_out = out_size;
    while (zs_.avail_out == out_size) {  // until something is produced
      if (!in_member_) {
        // Between members: the end of the data, or the magic of the next member.
        while (in_end_ - in_pos_ < 2 && !eof_)
          if (!refill()) return -1;
        const std::size_t left = in_end_ - in_pos_;
        if (left == 0) return 0;  // every member complete
        if (left < 2 || static_cast<unsigned char>(in_[in_pos_]) != 0x1f || static_cast<unsigned char>(in_[in_pos_ + 1]) != 0x8b)
          return fail_at("unexpected data after gzip member " + std::to_string(members_) +
                         " (trailing bytes that are not a gzip member; the file is damaged or not one gzip stream)");
        if (members_ > 0 && inflateReset(&zs_) != Z_OK) return fail("zlib: cannot reset inflate");
        in_member_ = true;
      }
      if (in_pos_ == in_end_) {
        if (!eof_ && !refill()) return -1;
        if (in_pos_ == in_end_)
          return fail_at("truncated gzip stream: member " + std::to_string(members_ + 1) +
                         " ends before its end marker and checksum (was the file cut short?)");
      }
      zs_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      zs_.avail_in = static_cast<uInt>(in_end_ - in_pos_);
      const int ret = inflate(&zs_, Z_NO_FLUSH);
      in_pos_ = in_end_ - zs_.avail_in;
      if (ret == Z_STREAM_END) {
        in_member_ = false;
        ++members_;
      } else if (ret == Z_NEED_DICT || ret == Z_DATA_ERROR) {
        return fail_at(std::string("corrupt gzip data in member ") + std::to_string(members_ + 1) + ": " +
                       (zs_.msg ? zs_.msg : "invalid deflate stream"));
      } else if (ret == Z_MEM_ERROR) {
        return fail("zlib: out of memory");
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        return fail("zlib: inflate failed (code " + std::to_string(ret) + ")");
      }
    }
    return static_cast<std::ptrdiff_t>(out_size - zs_.avail_out);
  }

  // Moves unread input to the front and reads more; false on a read error.
  bool refill() {
    if (in_pos_ > 0) {
      std::memmove(in_.data(), in_.data() + in_pos_, in_end_ - in_pos_);
      in_end_ -= in_pos_;
      in_pos_ = 0;
    }
    if (in_end_ == in_.size()) return true;
    for (;;) {
      const ::ssize_t got = ::read(fd_, in_.data() + in_end_, in_.size() - in_end_);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return fail_errno("read failed");
      if (got == 0) eof_ = true;
      in_end_ += static_cast<std::size_t>(got);
      consumed_ += static_cast<std::uint64_t>(got);
      return true;
    }
  }

  // Byte offset of the next unread input byte in the file.
  std::uint64_t offset() const { return consumed_ - (in_end_ - in_pos_); }

  std::ptrdiff_t fail_at(const std::string& what) { return fail(what + " at byte " + std::to_string(offset()) + " of the file"); }
  bool fail_errno(const char* what) {
    const int err = errno;
    fail(std::string(what) + ": " + std::strerror(err));
    return false;
  }
  bool fail_open(const std::string& what) {
    fail(what);
    close();
    return false;
  }
  std::ptrdiff_t fail(const std::string& what) {
    error_ = what;
    return -1;
  }

  int fd_ = -1;
  std::vector<char> in_;
  std::size_t in_pos_ = 0, in_end_ = 0;
  std::uint64_t consumed_ = 0;  // bytes read from the file so far
  bool eof_ = false, gzip_ = false, in_member_ = false, zs_open_ = false;
  std::uint64_t members_ = 0;  // complete gzip members
  z_stream zs_{};
  std::string error_;
};

}  // namespace plm::data::detail

#include "services/agent/output_spool.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace taskgrid {

OutputSpool::~OutputSpool() {
  if (fd_ >= 0) close(fd_);
}

bool OutputSpool::OpenFile() {
  if (fd_ >= 0) return true;
  // Unnamed: nothing to clean up, whatever happens to the agent.
  fd_ = open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    std::string path = dir_ + "/taskgrid-spool-XXXXXX";
    fd_ = mkostemp(path.data(), O_CLOEXEC);
    if (fd_ >= 0) unlink(path.c_str());
  }
  if (fd_ < 0) {
    spdlog::warn("output_spool_unavailable dir={} error=\"{}\"", dir_, std::strerror(errno));
  }
  return fd_ >= 0;
}

void OutputSpool::Append(absl::string_view data) {
  const int64_t n = static_cast<int64_t>(data.size());
  const int64_t in_memory = (file_len_ > 0 ? file_base_ : end_) - start_;
  // Once the file is in use, everything newer goes there too, in order.
  if ((file_len_ > 0 || in_memory + n > memory_) && OpenFile()) {
    if (file_len_ == 0) file_base_ = end_;
    if (pwrite(fd_, data.data(), data.size(), file_len_) == n) {
      file_len_ += n;
      end_ += n;
      return;
    }
    spdlog::warn("output_spool_write_failed dir={} error=\"{}\"", dir_, std::strerror(errno));
    if (file_len_ > 0) {  // Back to memory, ahead of the new bytes.
      const int64_t from = std::max(start_, file_base_);
      std::string spooled = Read(from, end_ - from);
      if (static_cast<int64_t>(spooled.size()) != end_ - from) {
        spdlog::error("output_spool_lost bytes={}",
                      end_ - from - static_cast<int64_t>(spooled.size()));
        spooled.resize(static_cast<size_t>(end_ - from));  // Keeps offsets aligned.
      }
      chunks_.push_back({from, std::move(spooled)});
      file_len_ = 0;
    }
  }
  chunks_.push_back({end_, std::string(data)});
  end_ += n;
}

void OutputSpool::Drop(int64_t offset) {
  offset = std::min(offset, end_);
  if (offset <= start_) return;
  start_ = offset;
  while (!chunks_.empty() &&
         chunks_.front().offset + static_cast<int64_t>(chunks_.front().data.size()) <= offset) {
    chunks_.pop_front();
  }
  if (!chunks_.empty() && chunks_.front().offset < offset) {
    chunks_.front().data.erase(0, static_cast<size_t>(offset - chunks_.front().offset));
    chunks_.front().offset = offset;
  }
  if (file_len_ == 0 || start_ < file_base_) return;
  // Only the file holds bytes now: once they fit in half the memory, move
  // them back and empty the file, so a steady stream never grows it.
  if (end_ - start_ <= memory_ / 2) {
    std::string rest = Read(start_, end_ - start_);
    if (static_cast<int64_t>(rest.size()) != end_ - start_) return;  // Read failed: keep the file.
    if (!rest.empty()) chunks_.push_back({start_, std::move(rest)});
    if (ftruncate(fd_, 0) != 0) {
      spdlog::warn("output_spool_truncate_failed error=\"{}\"", std::strerror(errno));
    }
    file_len_ = 0;
  }
}

std::string OutputSpool::Read(int64_t offset, int64_t max) const {
  std::string out;
  max = std::min(max, end_ - offset);
  if (max <= 0) return out;
  if (file_len_ == 0 || offset < file_base_) {
    for (const Chunk& c : chunks_) {
      const int64_t c_end = c.offset + static_cast<int64_t>(c.data.size());
      if (c_end <= offset) continue;
      if (static_cast<int64_t>(out.size()) >= max || c.offset > offset + max) break;
      const int64_t from =
          std::max<int64_t>(0, offset + static_cast<int64_t>(out.size()) - c.offset);
      const int64_t n = std::min(static_cast<int64_t>(c.data.size()) - from,
                                 max - static_cast<int64_t>(out.size()));
      out.append(c.data, static_cast<size_t>(from), static_cast<size_t>(n));
    }
    return out;
  }
  out.resize(static_cast<size_t>(max));
  const ssize_t got = pread(fd_, out.data(), out.size(), offset - file_base_);
  out.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return out;
}

}  // namespace taskgrid

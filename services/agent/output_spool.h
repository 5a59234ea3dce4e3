// The unacknowledged output of one task stream, bytes [start(), end()): the
// oldest in memory up to a limit, the rest in an unnamed file (gone with the
// agent) once memory is full, so a task keeps running while the coordinator
// is away. The file is emptied whenever everything in it is acknowledged.
#ifndef TASKGRID_SERVICES_AGENT_OUTPUT_SPOOL_H_
#define TASKGRID_SERVICES_AGENT_OUTPUT_SPOOL_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/strings/string_view.h"

namespace taskgrid {

// Not thread-safe; the agent's lock guards it.
class OutputSpool {
 public:
  // `dir` holds the file (created on first use); `memory_bytes` are kept in
  // memory first.
  OutputSpool(std::string dir, int64_t memory_bytes)
      : dir_(std::move(dir)), memory_(memory_bytes) {}
  ~OutputSpool();
  OutputSpool(const OutputSpool&) = delete;
  OutputSpool& operator=(const OutputSpool&) = delete;

  // Appends at end(). When the file cannot be written (disk full, no
  // directory) the bytes stay in memory: the caller bounds size().
  void Append(absl::string_view data);
  // Forgets the bytes below `offset` (acknowledged).
  void Drop(int64_t offset);
  // Forgets everything.
  void Clear() { Drop(end_); }
  // Makes an empty spool go on at `offset`: the bytes before it were
  // delivered by an earlier run of the agent. No effect on a non-empty one.
  void Rebase(int64_t offset) {
    if (size() == 0) start_ = end_ = offset;
  }
  // Up to `max` bytes from `offset`, start() <= offset < end().
  std::string Read(int64_t offset, int64_t max) const;

  int64_t start() const { return start_; }
  int64_t end() const { return end_; }
  int64_t size() const { return end_ - start_; }
  int64_t file_bytes() const { return file_len_; }

 private:
  struct Chunk {
    int64_t offset;
    std::string data;
  };
  bool OpenFile();

  const std::string dir_;
  const int64_t memory_;
  int64_t start_ = 0;
  int64_t end_ = 0;
  // The file holds [file_base_, end_) while file_len_ > 0; memory holds
  // the bytes before it (all of them while the file is not in use).
  std::deque<Chunk> chunks_;
  int fd_ = -1;
  int64_t file_base_ = 0;
  int64_t file_len_ = 0;
};

}  // namespace taskgrid

#endif  // TASKGRID_SERVICES_AGENT_OUTPUT_SPOOL_H_

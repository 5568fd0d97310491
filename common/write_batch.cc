#include "common/write_batch.h"

#include <algorithm>
#include <vector>

namespace sluice {
namespace {

uint32_t GetLength(std::string_view rep, size_t pos) {
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) {
    n |= static_cast<uint32_t>(static_cast<uint8_t>(rep[pos + i])) << (8 * i);
  }
  return n;
}

}  // namespace

// The chunks are only ever written by Put and Delete, so they are well formed.
void WriteBatch::Iterator::Decode() {
  pos_ = next_;
  while (chunk_ < chunks_->size() && pos_ >= (*chunks_)[chunk_].size()) {
    ++chunk_;
    pos_ = 0;
  }
  if (chunk_ >= chunks_->size()) {
    chunk_ = chunks_->size();
    pos_ = 0;
    return;
  }
  const std::string_view rep = (*chunks_)[chunk_];
  size_t p = pos_;
  op_.put = rep[p] == 'P';
  const uint32_t key_size = GetLength(rep, p + 1);
  op_.key = rep.substr(p + 5, key_size);
  p += 5 + key_size;
  op_.value = {};
  if (op_.put) {
    const uint32_t value_size = GetLength(rep, p);
    op_.value = rep.substr(p + 4, value_size);
    p += 4 + value_size;
  }
  next_ = p;
}

void WriteBatch::SortByKey() {
  struct Entry {
    std::string_view key;
    std::string_view op;  // its whole encoding
  };
  // Often in order already (deletes of keys as a scan gave them).
  bool in_order = true;
  std::string_view last;
  for (const Op& op : *this) {
    if (op.key < last) {
      in_order = false;
      break;
    }
    last = op.key;
  }
  if (in_order) return;
  std::vector<Entry> entries;
  entries.reserve(count_);
  for (Iterator it = begin(); it != end(); ++it) {
    entries.push_back(
        {it->key, std::string_view((*it.chunks_)[it.chunk_]).substr(it.pos_, it.next_ - it.pos_)});
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.key < b.key; });
  WriteBatch sorted;
  for (const Entry& e : entries) {
    std::string& chunk = sorted.Append(e.op[0], e.key, e.op.size() - 5 - e.key.size());
    chunk.append(e.op.substr(5 + e.key.size()));
  }
  *this = std::move(sorted);
}

}  // namespace sluice

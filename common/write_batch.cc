#include "common/write_batch.h"

#include <algorithm>
#include <vector>

namespace sluice {
namespace {

bool GetSlice(std::string_view* in, std::string_view* slice) {
  if (in->size() < 4) return false;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<uint8_t>((*in)[i])) << (8 * i);
  in->remove_prefix(4);
  if (in->size() < n) return false;
  *slice = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

}  // namespace

bool WriteBatch::DecodeOp(std::string_view* encoded, Op* op) {
  if (encoded->empty()) return false;
  const char tag = encoded->front();
  if (tag != 'P' && tag != 'D') return false;
  encoded->remove_prefix(1);
  op->put = tag == 'P';
  op->value = {};
  return GetSlice(encoded, &op->key) && (!op->put || GetSlice(encoded, &op->value));
}

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
  // Put and Delete wrote the chunks, so they decode.
  std::string_view rest = std::string_view((*chunks_)[chunk_]).substr(pos_);
  const size_t size = rest.size();
  DecodeOp(&rest, &op_);
  next_ = pos_ + (size - rest.size());
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

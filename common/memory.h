#pragma once

// What a process with a bounded state does about malloc (glibc's), so that
// memory it frees goes back to the system rather than staying resident.

#include <cstddef>

namespace sluice {

// Fixes malloc's mmap threshold at `bytes`: a buffer of that size or more
// (a task's timers firing at once, a checkpoint's batch chunks, RocksDB's
// memtable blocks) is mapped on its own and unmapped when freed. By default
// glibc raises the threshold to the largest such buffer freed, after which
// those buffers come from the heap and leave it fragmented.
void FixMmapThreshold(size_t bytes = size_t{1} << 20);

// Gives the whole free pages malloc holds back to the system (malloc_trim).
// Walks malloc's free lists: for a periodic call (seconds), not per batch.
void ReleaseFreeMemory();

}  // namespace sluice

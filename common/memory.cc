#include "common/memory.h"

#include <malloc.h>

#include <climits>

namespace sluice {

void FixMmapThreshold(size_t bytes) {
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(bytes < INT_MAX ? bytes : INT_MAX));
}

void ReleaseFreeMemory() { malloc_trim(0); }

}  // namespace sluice

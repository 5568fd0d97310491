#include "worker/engine/record.h"

namespace sluice::engine {

const char* OutputStreamName(OutputStream stream) {
  switch (stream) {
    case OutputStream::kOutput:
      return "output";
    case OutputStream::kLate:
      return "late";
    case OutputStream::kDeadLetter:
      return "dead_letter";
  }
  return "unknown";
}

}  // namespace sluice::engine

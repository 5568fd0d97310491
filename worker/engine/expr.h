#pragma once

// Expressions of the job language (../../shared design JOBS.md "Expressions"):
//
//   field paths (user.id), numbers, "strings", true, false, null,
//   + - * / %, == != < <= > >=, && || !, x in [a, b], parentheses,
//   exists(f), new_value(f), lower(s), abs(x)
//
// An expression is parsed once, when a job is compiled, into a compact form
// whose names are already resolved to slots (see ExprScope). Evaluating it per
// event reads the slots from an EvalInput and never allocates; the strings that
// lower() makes live in an EvalScratch owned by the caller.
//
// Semantics: a missing field is null; arithmetic with a null or non-number is
// null; division or modulo by zero is null; a comparison with null is false
// (== and != included); numbers compare numerically, strings bytewise, bools
// with == and != only, values of different types are unequal; && and || take
// null or non-bool operands as false and yield a bool; !x of a non-bool is null;
// `x in [a, b]` is x == a || x == b.
//
// Thread safety: an Expr is immutable after Parse; Eval may run on many threads
// at once, each with its own EvalScratch.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/engine/value.h"

namespace sluice::engine {

// What a name in an expression refers to.
struct ExprRef {
  enum class Kind : uint8_t { kField, kAggregate };
  Kind kind = Kind::kField;
  uint32_t slot = 0;
};

// Resolves names while an expression is parsed. Supplied by the job compiler,
// which knows which fields and aggregates exist where the expression sits.
class ExprScope {
 public:
  virtual ~ExprScope() = default;
  // `name` is an identifier or dotted path as written ("amount", "user.id").
  // Returns nullopt when the name is not allowed here; the parser then fails
  // with "unknown name 'x'" plus the message from UnknownNameHint().
  virtual std::optional<ExprRef> Resolve(std::string_view name) = 0;
  // new_value(f): the slot of the boolean "f has a value no other event of the
  // key in the window has", or nullopt where new_value is not allowed.
  virtual std::optional<uint32_t> ResolveNewValue(std::string_view field_path) = 0;
  // Appended to "unknown name" errors, e.g. "(aggregates here: n, total)".
  virtual std::string UnknownNameHint() const { return ""; }
  // The error where ResolveNewValue refuses new_value(): why it is not
  // allowed here.
  virtual std::string NewValueRefusal() const {
    return "new_value() is only allowed in rules with a rolling window";
  }
};

// The per-event inputs an expression reads.
struct EvalInput {
  std::span<const Value> fields;
  std::span<const Value> aggregates;
  std::span<const bool> new_values;
};

// Space for strings made during one evaluation (lower()). Reused across
// evaluations; reset by Eval.
class EvalScratch {
 public:
  EvalScratch();
  // Returns a buffer of `n` bytes valid until the next Reset.
  char* Allocate(size_t n);
  void Reset() { used_ = 0; }

  // Comparisons (==, <, in, ...) and arithmetic that met two non-null values
  // of different types, over every evaluation with this scratch (Reset keeps
  // it). Such a comparison is false and such arithmetic null, as the
  // semantics say; the count makes a producer's type drift visible.
  int64_t type_mismatches() const { return type_mismatches_; }
  void CountTypeMismatch() { ++type_mismatches_; }

 private:
  std::vector<char> buf_;
  size_t used_ = 0;
  int64_t type_mismatches_ = 0;
  std::vector<std::unique_ptr<char[]>> overflow_;
};

class Expr {
 public:
  // Parses `text`. On error the Status message reads
  // "column N: expected <what>, got <what>" (columns count from 1).
  static Result<Expr> Parse(std::string_view text, ExprScope& scope);

  Expr();
  ~Expr();
  Expr(Expr&&) noexcept;
  Expr& operator=(Expr&&) noexcept;

  // Evaluates against one event. Never allocates once `scratch` has warmed up.
  Value Eval(const EvalInput& in, EvalScratch& scratch) const;
  // Eval(...).IsTrue(): a null or non-bool result is false.
  bool EvalBool(const EvalInput& in, EvalScratch& scratch) const {
    return Eval(in, scratch).IsTrue();
  }

  // The source text, as given to Parse.
  const std::string& text() const;

  // Whether aggregate `slot` is read only as one side of a comparison
  // (== != < <= > >=) whose other side is a number literal, as in
  // `total > 10000`. If so, appends those numbers to `thresholds`: the
  // expression then gives the same result for every value of the aggregate
  // in a closed interval that holds none of them (the rolling rules use this
  // to judge a running sum without summing the window again). False when the
  // aggregate is read any other way; true without thresholds when it is not
  // read at all.
  bool ReadsAggregateOnlyAgainstConstants(uint32_t slot, std::vector<double>* thresholds) const;

 private:
  struct Program;
  std::unique_ptr<Program> program_;
};

}  // namespace sluice::engine

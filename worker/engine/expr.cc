#include "worker/engine/expr.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>
#include <utility>

// How it works: Parse lexes the whole text into tokens, then a recursive
// descent parser (one function per precedence level) emits postfix
// instructions for a small stack machine while it reads, resolving names to
// slots through the ExprScope. && and || compile to conditional jumps, so the
// right operand is skipped when the left one decides. Eval runs the
// instructions over a fixed array of Values on its own stack; the parser has
// already checked that the expression never needs more than kMaxStack of them.

namespace sluice::engine {
namespace {

// Bytes an EvalScratch starts with.
constexpr size_t kScratchBytes = 4096;
// Deepest nesting of parentheses, call arguments, list elements and unary
// operators; bounds the parser's recursion.
constexpr int kMaxNesting = 64;
// Values an evaluation may hold at once.
constexpr size_t kMaxStack = 64;
// How much of a token an error message quotes.
constexpr size_t kMaxQuoted = 32;

constexpr std::string_view kFunctions = "exists, new_value, lower, abs";

// ---------------------------------------------------------------------------
// Instructions

enum class Op : uint8_t {
  kConstant,   // push constants[arg]
  kField,      // push in.fields[arg], null when out of range
  kAggregate,  // push in.aggregates[arg], null when out of range
  kNewValue,   // push in.new_values[arg] as a bool, null when out of range
  kExists,     // top = top is not null
  kLower,      // top = ASCII lower case of a string top, written to scratch
  kAbs,        // top = |top|
  kNot,        // top = !top
  kNegate,     // top = -top
  kAdd,        // pop b, top = top + b; likewise for the ops up to kGe
  kSub,
  kMul,
  kDiv,
  kMod,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAndJump,    // pop; unless it is true, push false and jump to arg
  kOrJump,     // pop; if it is true, push true and jump to arg
  kToBool,     // top = top.IsTrue()
  kInBegin,    // push false: "x matched an element so far"
  kInElement,  // pop e; stack is [.., x, matched]: matched |= (x == e)
  kInEnd,      // pop matched; top (x) = matched
};

struct Instr {
  Op op;
  uint32_t arg = 0;
};

// How many values an instruction adds to the stack (negative: removes).
int StackEffect(Op op) {
  switch (op) {
    case Op::kConstant:
    case Op::kField:
    case Op::kAggregate:
    case Op::kNewValue:
    case Op::kInBegin:
      return 1;
    case Op::kExists:
    case Op::kLower:
    case Op::kAbs:
    case Op::kNot:
    case Op::kNegate:
    case Op::kToBool:
      return 0;
    case Op::kAdd:
    case Op::kSub:
    case Op::kMul:
    case Op::kDiv:
    case Op::kMod:
    case Op::kEq:
    case Op::kNe:
    case Op::kLt:
    case Op::kLe:
    case Op::kGt:
    case Op::kGe:
    case Op::kAndJump:
    case Op::kOrJump:
    case Op::kInElement:
    case Op::kInEnd:
      return -1;
  }
  return 0;
}

// The compiled form of an expression. String constants point into `strings`.
struct Bytecode {
  std::vector<Instr> code;
  std::vector<Value> constants;
  std::string strings;
};

// ---------------------------------------------------------------------------
// Evaluation helpers

Value SlotOrNull(std::span<const Value> values, uint32_t slot) {
  return slot < values.size() ? values[slot] : Value::Null();
}

Value Arithmetic(Op op, const Value& a, const Value& b) {
  if (!a.is_number() || !b.is_number()) return Value::Null();
  switch (op) {
    case Op::kAdd:
      return Value::Number(a.number + b.number);
    case Op::kSub:
      return Value::Number(a.number - b.number);
    case Op::kMul:
      return Value::Number(a.number * b.number);
    case Op::kDiv:
      if (b.number == 0) return Value::Null();
      return Value::Number(a.number / b.number);
    case Op::kMod:
      if (b.number == 0) return Value::Null();
      return Value::Number(std::fmod(a.number, b.number));
    default:
      return Value::Null();
  }
}

template <typename T>
bool Ordered(Op op, const T& a, const T& b) {
  switch (op) {
    case Op::kEq:
      return a == b;
    case Op::kNe:
      return a != b;
    case Op::kLt:
      return a < b;
    case Op::kLe:
      return a <= b;
    case Op::kGt:
      return a > b;
    case Op::kGe:
      return a >= b;
    default:
      return false;
  }
}

// Two values, neither null, of different types: a comparison or arithmetic
// that cannot be what the job meant (a number field arriving as a string).
bool MixedTypes(const Value& a, const Value& b) {
  return a.type != b.type && !a.is_null() && !b.is_null();
}

bool Compare(Op op, const Value& a, const Value& b) {
  if (a.is_null() || b.is_null()) return false;
  if (a.type != b.type) return op == Op::kNe;
  switch (a.type) {
    case ValueType::kNumber:
      return Ordered(op, a.number, b.number);
    case ValueType::kString:
      return Ordered(op, a.str, b.str);
    case ValueType::kBool:
      if (op != Op::kEq && op != Op::kNe) return false;
      return Ordered(op, a.boolean, b.boolean);
    case ValueType::kNull:
      return false;
  }
  return false;
}

Value Lower(const Value& v, EvalScratch& scratch) {
  if (!v.is_string()) return Value::Null();
  char* out = scratch.Allocate(v.str.size());
  for (size_t i = 0; i < v.str.size(); ++i) {
    char c = v.str[i];
    out[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return Value::String(std::string_view(out, v.str.size()));
}

// ---------------------------------------------------------------------------
// Lexer

enum class Tok : uint8_t {
  kEnd,
  kNumber,
  kString,
  kName,  // an identifier or dotted path; also true, false, null
  kIn,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
  kBang,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAnd,
  kOr,
  kUnknown,  // a character no token starts with
  kError,    // a malformed number or string literal; `error` says why
};

struct Token {
  Tok kind = Tok::kEnd;
  std::string_view text;  // as written
  size_t offset = 0;      // of text in the source
  double number = 0;      // kNumber
  std::string str;        // kString, unescaped
  std::string error;      // kError, the whole message
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Columns count characters (UTF-8 code points) from 1.
size_t ColumnOf(std::string_view text, size_t offset) {
  size_t column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (!IsContinuationByte(text[i])) ++column;
  }
  return column;
}

std::string ColumnPrefix(std::string_view text, size_t offset) {
  return "column " + std::to_string(ColumnOf(text, offset)) + ": ";
}

// Splits an expression into tokens. The list ends with a kEnd token, or with
// a kError token at the first malformed literal.
class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  std::vector<Token> Run() {
    std::vector<Token> tokens;
    while (true) {
      while (pos_ < text_.size() && IsSpace(text_[pos_])) ++pos_;
      Token token = Next();
      Tok kind = token.kind;
      tokens.push_back(std::move(token));
      if (kind == Tok::kEnd || kind == Tok::kError) return tokens;
    }
  }

 private:
  Token Next() {
    Token t;
    t.offset = pos_;
    if (pos_ == text_.size()) {
      t.kind = Tok::kEnd;
      return t;
    }
    char c = text_[pos_];
    if (IsDigit(c)) {
      LexNumber(t);
    } else if (IsNameStart(c)) {
      LexName(t);
    } else if (c == '"') {
      LexString(t);
    } else {
      LexOperator(t);
    }
    t.text = text_.substr(t.offset, pos_ - t.offset);
    return t;
  }

  void SkipDigits() {
    while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
  }
  bool DigitAt(size_t i) const { return i < text_.size() && IsDigit(text_[i]); }

  void LexNumber(Token& t) {
    SkipDigits();
    if (pos_ < text_.size() && text_[pos_] == '.' && DigitAt(pos_ + 1)) {
      ++pos_;
      SkipDigits();
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      size_t digits = pos_ + 1;
      if (digits < text_.size() && (text_[digits] == '+' || text_[digits] == '-')) {
        ++digits;
      }
      if (DigitAt(digits)) {
        pos_ = digits;
        SkipDigits();
      }
    }
    const char* begin = text_.data() + t.offset;
    const char* end = text_.data() + pos_;
    auto [ptr, ec] = std::from_chars(begin, end, t.number);
    if (ec != std::errc() || ptr != end) {
      t.kind = Tok::kError;
      t.error = ColumnPrefix(text_, t.offset) + "number '" + std::string(begin, end) +
                "' is out of range";
      return;
    }
    t.kind = Tok::kNumber;
  }

  void LexName(Token& t) {
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    while (pos_ + 1 < text_.size() && text_[pos_] == '.' && IsNameChar(text_[pos_ + 1])) {
      ++pos_;
      while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    }
    t.kind = text_.substr(t.offset, pos_ - t.offset) == "in" ? Tok::kIn : Tok::kName;
  }

  void LexString(Token& t) {
    ++pos_;  // the opening quote
    while (true) {
      if (pos_ == text_.size()) {
        t.kind = Tok::kError;
        t.error = ColumnPrefix(text_, pos_) +
                  "expected '\"' to close the string that starts at column " +
                  std::to_string(ColumnOf(text_, t.offset)) + ", got end of input";
        return;
      }
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        t.kind = Tok::kString;
        return;
      }
      if (c != '\\') {
        t.str += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 == text_.size()) {
        ++pos_;
        continue;  // reported as an unclosed string
      }
      switch (text_[pos_ + 1]) {
        case '"':
          t.str += '"';
          break;
        case '\\':
          t.str += '\\';
          break;
        case 'n':
          t.str += '\n';
          break;
        case 't':
          t.str += '\t';
          break;
        default:
          t.kind = Tok::kError;
          t.error = ColumnPrefix(text_, pos_) + "expected one of \\\" \\\\ \\n \\t, got '" +
                    std::string(EscapeAt(pos_)) + "'";
          return;
      }
      pos_ += 2;
    }
  }

  // The escape at `backslash`: the backslash and the character after it.
  std::string_view EscapeAt(size_t backslash) const {
    size_t end = backslash + 2;
    while (end < text_.size() && IsContinuationByte(text_[end])) ++end;
    return text_.substr(backslash, end - backslash);
  }

  void LexOperator(Token& t) {
    char c = text_[pos_];
    char next = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
    auto two = [&](Tok kind) {
      t.kind = kind;
      pos_ += 2;
    };
    auto one = [&](Tok kind) {
      t.kind = kind;
      pos_ += 1;
    };
    switch (c) {
      case '(':
        return one(Tok::kLParen);
      case ')':
        return one(Tok::kRParen);
      case '[':
        return one(Tok::kLBracket);
      case ']':
        return one(Tok::kRBracket);
      case ',':
        return one(Tok::kComma);
      case '+':
        return one(Tok::kPlus);
      case '-':
        return one(Tok::kMinus);
      case '*':
        return one(Tok::kStar);
      case '/':
        return one(Tok::kSlash);
      case '%':
        return one(Tok::kPercent);
      case '!':
        return next == '=' ? two(Tok::kNe) : one(Tok::kBang);
      case '<':
        return next == '=' ? two(Tok::kLe) : one(Tok::kLt);
      case '>':
        return next == '=' ? two(Tok::kGe) : one(Tok::kGt);
      case '=':
        if (next == '=') return two(Tok::kEq);
        break;
      case '&':
        if (next == '&') return two(Tok::kAnd);
        break;
      case '|':
        if (next == '|') return two(Tok::kOr);
        break;
      default:
        break;
    }
    t.kind = Tok::kUnknown;
    ++pos_;
    while (pos_ < text_.size() && IsContinuationByte(text_[pos_])) ++pos_;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// How an error message names a token: "end of input" or the text quoted.
std::string Describe(const Token& t) {
  if (t.kind == Tok::kEnd) return "end of input";
  if (t.text.size() <= kMaxQuoted) return "'" + std::string(t.text) + "'";
  size_t cut = kMaxQuoted;
  while (cut > 0 && IsContinuationByte(t.text[cut])) --cut;
  return "'" + std::string(t.text.substr(0, cut)) + "...'";
}

// ---------------------------------------------------------------------------
// Parser

struct BinaryOp {
  Tok token;
  Op op;
};

constexpr BinaryOp kEqualityOps[] = {{Tok::kEq, Op::kEq}, {Tok::kNe, Op::kNe}};
constexpr BinaryOp kComparisonOps[] = {
    {Tok::kLt, Op::kLt}, {Tok::kLe, Op::kLe}, {Tok::kGt, Op::kGt}, {Tok::kGe, Op::kGe}};
constexpr BinaryOp kSumOps[] = {{Tok::kPlus, Op::kAdd}, {Tok::kMinus, Op::kSub}};
constexpr BinaryOp kProductOps[] = {
    {Tok::kStar, Op::kMul}, {Tok::kSlash, Op::kDiv}, {Tok::kPercent, Op::kMod}};

// Parses one expression into `out`. Grammar, loosest first:
//
//   expr       := and ('||' and)*
//   and        := equality ('&&' equality)*
//   equality   := comparison (('==' | '!=') comparison)*
//   comparison := in (('<' | '<=' | '>' | '>=') in)*
//   in         := sum ('in' '[' [expr (',' expr)*] ']')*
//   sum        := product (('+' | '-') product)*
//   product    := unary (('*' | '/' | '%') unary)*
//   unary      := ('!' | '-') unary | primary
//   primary    := number | string | true | false | null | path
//               | name '(' args ')' | '(' expr ')'
class Parser {
 public:
  Parser(std::string_view text, ExprScope& scope, Bytecode& out)
      : text_(text), scope_(scope), out_(out), tokens_(Lexer(text).Run()) {}

  Status Run() {
    SLUICE_RETURN_IF_ERROR(ParseExpr());
    if (Peek().kind != Tok::kEnd) return Unexpected("end of expression");
    if (stack_overflow_at_) {
      return ErrorAt(*stack_overflow_at_, "expression is too complex: it needs more than " +
                                              std::to_string(kMaxStack) +
                                              " values at once; split it or use fewer parentheses");
    }
    for (const PendingString& s : strings_) {
      out_.constants[s.constant].str = std::string_view(out_.strings).substr(s.offset, s.size);
    }
    return Status::Ok();
  }

 private:
  using ParseFn = Status (Parser::*)();

  // A string constant whose bytes sit at `offset` in out_.strings, which may
  // still grow (and move) until parsing ends.
  struct PendingString {
    uint32_t constant;
    size_t offset;
    size_t size;
  };

  const Token& Peek() const { return tokens_[pos_]; }
  const Token& Take() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool Accept(Tok kind) {
    if (Peek().kind != kind) return false;
    Take();
    return true;
  }
  Status Expect(Tok kind, std::string_view what) {
    if (Accept(kind)) return Status::Ok();
    return Unexpected(what);
  }

  Status ErrorAt(size_t offset, const std::string& message) const {
    return Status::InvalidArgument(ColumnPrefix(text_, offset) + message);
  }
  // "expected <what>, got <the next token>"; a malformed literal reports
  // itself instead.
  Status Unexpected(std::string_view what) const {
    const Token& t = Peek();
    if (t.kind == Tok::kError) return Status::InvalidArgument(t.error);
    return ErrorAt(t.offset, "expected " + std::string(what) + ", got " + Describe(t));
  }

  void Emit(Op op, uint32_t arg = 0) {
    out_.code.push_back(Instr{op, arg});
    stack_ += StackEffect(op);
    if (stack_ > static_cast<int>(kMaxStack) && !stack_overflow_at_) {
      stack_overflow_at_ = last_offset_;
    }
  }
  void EmitConstant(Value v) {
    out_.constants.push_back(v);
    Emit(Op::kConstant, static_cast<uint32_t>(out_.constants.size() - 1));
  }
  void EmitString(const std::string& s) {
    strings_.push_back(
        PendingString{static_cast<uint32_t>(out_.constants.size()), out_.strings.size(), s.size()});
    out_.strings += s;
    EmitConstant(Value::String({}));
  }
  // Emits a jump whose target PatchJump sets later.
  size_t EmitJump(Op op) {
    Emit(op);
    return out_.code.size() - 1;
  }
  void PatchJump(size_t at) { out_.code[at].arg = static_cast<uint32_t>(out_.code.size()); }

  // Runs `fn` one nesting level deeper.
  Status Nested(ParseFn fn) {
    if (nesting_ == kMaxNesting) {
      return ErrorAt(Peek().offset, "expression is nested too deeply (more than " +
                                        std::to_string(kMaxNesting) + " levels)");
    }
    ++nesting_;
    Status status = (this->*fn)();
    --nesting_;
    return status;
  }

  Status ParseExpr() { return Nested(&Parser::ParseOr); }

  Status ParseOr() {
    SLUICE_RETURN_IF_ERROR(ParseAnd());
    while (Accept(Tok::kOr)) {
      size_t jump = EmitJump(Op::kOrJump);
      SLUICE_RETURN_IF_ERROR(ParseAnd());
      Emit(Op::kToBool);
      PatchJump(jump);
    }
    return Status::Ok();
  }

  Status ParseAnd() {
    SLUICE_RETURN_IF_ERROR(ParseEquality());
    while (Accept(Tok::kAnd)) {
      size_t jump = EmitJump(Op::kAndJump);
      SLUICE_RETURN_IF_ERROR(ParseEquality());
      Emit(Op::kToBool);
      PatchJump(jump);
    }
    return Status::Ok();
  }

  // operand (op operand)*, left associative.
  Status ParseLeftAssociative(ParseFn operand, std::span<const BinaryOp> ops) {
    SLUICE_RETURN_IF_ERROR((this->*operand)());
    while (true) {
      const BinaryOp* found = nullptr;
      for (const BinaryOp& op : ops) {
        if (Peek().kind == op.token) found = &op;
      }
      if (found == nullptr) return Status::Ok();
      Take();
      SLUICE_RETURN_IF_ERROR((this->*operand)());
      Emit(found->op);
    }
  }

  Status ParseEquality() { return ParseLeftAssociative(&Parser::ParseComparison, kEqualityOps); }
  Status ParseComparison() { return ParseLeftAssociative(&Parser::ParseIn, kComparisonOps); }

  Status ParseIn() {
    SLUICE_RETURN_IF_ERROR(ParseSum());
    while (Accept(Tok::kIn)) {
      SLUICE_RETURN_IF_ERROR(Expect(Tok::kLBracket, "'['"));
      Emit(Op::kInBegin);
      if (!Accept(Tok::kRBracket)) {
        do {
          SLUICE_RETURN_IF_ERROR(ParseExpr());
          Emit(Op::kInElement);
        } while (Accept(Tok::kComma));
        SLUICE_RETURN_IF_ERROR(Expect(Tok::kRBracket, "',' or ']'"));
      }
      Emit(Op::kInEnd);
    }
    return Status::Ok();
  }

  Status ParseSum() { return ParseLeftAssociative(&Parser::ParseProduct, kSumOps); }
  Status ParseProduct() { return ParseLeftAssociative(&Parser::ParseUnary, kProductOps); }

  Status ParseUnary() {
    Op op;
    if (Accept(Tok::kBang)) {
      op = Op::kNot;
    } else if (Accept(Tok::kMinus)) {
      op = Op::kNegate;
    } else {
      return ParsePrimary();
    }
    SLUICE_RETURN_IF_ERROR(Nested(&Parser::ParseUnary));
    Emit(op);
    return Status::Ok();
  }

  Status ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case Tok::kNumber:
        last_offset_ = Take().offset;
        EmitConstant(Value::Number(t.number));
        return Status::Ok();
      case Tok::kString:
        last_offset_ = Take().offset;
        EmitString(t.str);
        return Status::Ok();
      case Tok::kName:
        return ParseName();
      case Tok::kLParen:
        Take();
        SLUICE_RETURN_IF_ERROR(ParseExpr());
        return Expect(Tok::kRParen, "')'");
      default:
        return Unexpected("an expression");
    }
  }

  Status ParseName() {
    const Token& name = Take();
    last_offset_ = name.offset;
    if (Accept(Tok::kLParen)) return ParseCall(name);
    if (name.text == "true") {
      EmitConstant(Value::Bool(true));
    } else if (name.text == "false") {
      EmitConstant(Value::Bool(false));
    } else if (name.text == "null") {
      EmitConstant(Value::Null());
    } else {
      SLUICE_RETURN_IF_ERROR(EmitLoad(name));
    }
    return Status::Ok();
  }

  // Pushes the value `name` refers to.
  Status EmitLoad(const Token& name) {
    std::optional<ExprRef> ref = scope_.Resolve(name.text);
    if (!ref) {
      std::string hint = scope_.UnknownNameHint();
      if (!hint.empty() && !IsSpace(hint.front())) hint.insert(0, " ");
      return ErrorAt(name.offset, "unknown name '" + std::string(name.text) + "'" + hint);
    }
    Emit(ref->kind == ExprRef::Kind::kField ? Op::kField : Op::kAggregate, ref->slot);
    return Status::Ok();
  }

  // The field path argument of exists() and new_value().
  Result<const Token*> ParsePath() {
    const Token& t = Peek();
    if (t.kind != Tok::kName || t.text == "true" || t.text == "false" || t.text == "null") {
      return Unexpected("a field path");
    }
    last_offset_ = Take().offset;
    return &t;
  }

  // `name(` has been read.
  Status ParseCall(const Token& name) {
    if (name.text == "exists") {
      SLUICE_ASSIGN_OR_RETURN(const Token* path, ParsePath());
      SLUICE_RETURN_IF_ERROR(EmitLoad(*path));
      Emit(Op::kExists);
    } else if (name.text == "new_value") {
      SLUICE_ASSIGN_OR_RETURN(const Token* path, ParsePath());
      std::optional<uint32_t> slot = scope_.ResolveNewValue(path->text);
      if (!slot) {
        return ErrorAt(name.offset, scope_.NewValueRefusal());
      }
      Emit(Op::kNewValue, *slot);
    } else if (name.text == "lower" || name.text == "abs") {
      SLUICE_RETURN_IF_ERROR(ParseExpr());
      Emit(name.text == "lower" ? Op::kLower : Op::kAbs);
    } else {
      return ErrorAt(name.offset, "unknown function '" + std::string(name.text) +
                                      "' (functions: " + std::string(kFunctions) + ")");
    }
    return Expect(Tok::kRParen, "')'");
  }

  std::string_view text_;
  ExprScope& scope_;
  Bytecode& out_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  // Values on the evaluation stack after the code emitted so far.
  int stack_ = 0;
  // Where the code first needed more than kMaxStack values.
  std::optional<size_t> stack_overflow_at_;
  // Offset of the last operand read, for stack_overflow_at_.
  size_t last_offset_ = 0;
  std::vector<PendingString> strings_;
};

}  // namespace

// ---------------------------------------------------------------------------
// EvalScratch

EvalScratch::EvalScratch() : buf_(kScratchBytes) {}

char* EvalScratch::Allocate(size_t n) {
  // used_ == 0 means nothing has been handed out since the last Reset (an
  // overflow marks buf_ as full), so chunks from earlier rounds are free:
  // drop them and grow buf_ so that later rounds fit without allocating.
  if (used_ == 0 && !overflow_.empty()) {
    overflow_.clear();
    buf_.resize(std::max(buf_.size() * 2, n));
  }
  if (n <= buf_.size() - used_) {
    char* p = buf_.data() + used_;
    used_ += n;
    return p;
  }
  used_ = buf_.size();
  overflow_.push_back(std::make_unique_for_overwrite<char[]>(n));
  return overflow_.back().get();
}

// ---------------------------------------------------------------------------
// Expr

struct Expr::Program {
  std::string text;
  Bytecode bytecode;
};

Expr::Expr() = default;
Expr::~Expr() = default;
Expr::Expr(Expr&&) noexcept = default;
Expr& Expr::operator=(Expr&&) noexcept = default;

Result<Expr> Expr::Parse(std::string_view text, ExprScope& scope) {
  auto program = std::make_unique<Program>();
  program->text = std::string(text);
  Parser parser(program->text, scope, program->bytecode);
  SLUICE_RETURN_IF_ERROR(parser.Run());
  Expr expr;
  expr.program_ = std::move(program);
  return expr;
}

const std::string& Expr::text() const {
  static const std::string* const kEmpty = new std::string();
  return program_ ? program_->text : *kEmpty;
}

bool Expr::ReadsAggregateOnlyAgainstConstants(uint32_t slot,
                                              std::vector<double>* thresholds) const {
  if (!program_) return true;
  const std::vector<Instr>& code = program_->bytecode.code;
  const std::vector<Value>& constants = program_->bytecode.constants;
  auto is_comparison = [](Op op) {
    return op == Op::kEq || op == Op::kNe || op == Op::kLt || op == Op::kLe || op == Op::kGt ||
           op == Op::kGe;
  };
  auto number_constant = [&](size_t i) {
    return code[i].op == Op::kConstant && constants[code[i].arg].is_number();
  };
  // A jump into the middle of a pattern would make it something else.
  std::vector<bool> jump_target(code.size() + 1, false);
  for (const Instr& instr : code) {
    if (instr.op == Op::kAndJump || instr.op == Op::kOrJump) jump_target[instr.arg] = true;
  }
  for (size_t i = 0; i < code.size(); ++i) {
    if (code[i].op != Op::kAggregate || code[i].arg != slot) continue;
    // [aggregate][constant][compare] or [constant][aggregate][compare].
    if (i + 2 < code.size() && number_constant(i + 1) && is_comparison(code[i + 2].op) &&
        !jump_target[i + 1] && !jump_target[i + 2]) {
      thresholds->push_back(constants[code[i + 1].arg].number);
    } else if (i >= 1 && i + 1 < code.size() && number_constant(i - 1) &&
               is_comparison(code[i + 1].op) && !jump_target[i] && !jump_target[i + 1]) {
      thresholds->push_back(constants[code[i - 1].arg].number);
    } else {
      return false;
    }
  }
  return true;
}

Value Expr::Eval(const EvalInput& in, EvalScratch& scratch) const {
  scratch.Reset();
  if (!program_) return Value::Null();
  const std::vector<Instr>& code = program_->bytecode.code;
  const std::vector<Value>& constants = program_->bytecode.constants;

  // Uninitialized on purpose: zero-filling 64 values per call cost more than
  // evaluating most expressions. Every slot is written before it is read.
  union Slot {
    Slot() {}
    Value value;
  };
  Slot slots[kMaxStack];
  struct {
    Slot* slots;
    Value& operator[](size_t i) { return slots[i].value; }
  } stack{slots};
  size_t top = 0;  // values on the stack
  size_t pc = 0;
  while (pc < code.size()) {
    const Instr instr = code[pc++];
    switch (instr.op) {
      case Op::kConstant:
        stack[top++] = constants[instr.arg];
        break;
      case Op::kField:
        stack[top++] = SlotOrNull(in.fields, instr.arg);
        break;
      case Op::kAggregate:
        stack[top++] = SlotOrNull(in.aggregates, instr.arg);
        break;
      case Op::kNewValue:
        stack[top++] = instr.arg < in.new_values.size() ? Value::Bool(in.new_values[instr.arg])
                                                        : Value::Null();
        break;
      case Op::kExists:
        stack[top - 1] = Value::Bool(!stack[top - 1].is_null());
        break;
      case Op::kLower:
        stack[top - 1] = Lower(stack[top - 1], scratch);
        break;
      case Op::kAbs: {
        Value& v = stack[top - 1];
        v = v.is_number() ? Value::Number(std::fabs(v.number)) : Value::Null();
        break;
      }
      case Op::kNot: {
        Value& v = stack[top - 1];
        v = v.is_bool() ? Value::Bool(!v.boolean) : Value::Null();
        break;
      }
      case Op::kNegate: {
        Value& v = stack[top - 1];
        v = v.is_number() ? Value::Number(-v.number) : Value::Null();
        break;
      }
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod:
        --top;
        if (MixedTypes(stack[top - 1], stack[top])) scratch.CountTypeMismatch();
        stack[top - 1] = Arithmetic(instr.op, stack[top - 1], stack[top]);
        break;
      case Op::kEq:
      case Op::kNe:
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
        --top;
        if (MixedTypes(stack[top - 1], stack[top])) scratch.CountTypeMismatch();
        stack[top - 1] = Value::Bool(Compare(instr.op, stack[top - 1], stack[top]));
        break;
      case Op::kAndJump:
        if (!stack[top - 1].IsTrue()) {
          stack[top - 1] = Value::Bool(false);
          pc = instr.arg;
        } else {
          --top;
        }
        break;
      case Op::kOrJump:
        if (stack[top - 1].IsTrue()) {
          pc = instr.arg;
        } else {
          --top;
        }
        break;
      case Op::kToBool:
        stack[top - 1] = Value::Bool(stack[top - 1].IsTrue());
        break;
      case Op::kInBegin:
        stack[top++] = Value::Bool(false);
        break;
      case Op::kInElement: {
        --top;
        Value& matched = stack[top - 1];
        if (MixedTypes(stack[top - 2], stack[top])) scratch.CountTypeMismatch();
        if (!matched.boolean && Compare(Op::kEq, stack[top - 2], stack[top])) {
          matched.boolean = true;
        }
        break;
      }
      case Op::kInEnd:
        --top;
        stack[top - 1] = stack[top];
        break;
    }
  }
  return stack[0];
}

}  // namespace sluice::engine

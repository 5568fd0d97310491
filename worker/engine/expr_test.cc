#include "worker/engine/expr.h"

#include <array>
#include <catch2/catch.hpp>
#include <cstddef>
#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace sluice::engine {
namespace {

// Field slots of the test scope.
constexpr uint32_t kAmount = 0;
constexpr uint32_t kUserId = 1;
constexpr uint32_t kCountry = 2;
constexpr uint32_t kName = 3;
constexpr uint32_t kMissing = 4;
constexpr uint32_t kFlag = 5;
constexpr uint32_t kText = 6;
constexpr uint32_t kFieldCount = 7;
// Aggregate slots.
constexpr uint32_t kN = 0;
constexpr uint32_t kTotal = 1;

// Knows a fixed set of fields and two aggregates (n, total); hands out
// new_value slots in the order asked for, unless new_value is disallowed.
class TestScope : public ExprScope {
 public:
  std::optional<ExprRef> Resolve(std::string_view name) override {
    static constexpr std::pair<std::string_view, uint32_t> kFields[] = {
        {"amount", kAmount},   {"user.id", kUserId}, {"country", kCountry}, {"name", kName},
        {"missing", kMissing}, {"flag", kFlag},      {"text", kText}};
    for (const auto& [field, slot] : kFields) {
      if (name == field) return ExprRef{ExprRef::Kind::kField, slot};
    }
    if (name == "n") return ExprRef{ExprRef::Kind::kAggregate, kN};
    if (name == "total") return ExprRef{ExprRef::Kind::kAggregate, kTotal};
    return std::nullopt;
  }

  std::optional<uint32_t> ResolveNewValue(std::string_view path) override {
    if (!allow_new_value) return std::nullopt;
    new_value_paths.emplace_back(path);
    return static_cast<uint32_t>(new_value_paths.size() - 1);
  }

  std::string UnknownNameHint() const override { return hint; }

  bool allow_new_value = true;
  std::string hint;
  std::vector<std::string> new_value_paths;
};

// One event's inputs plus helpers that parse and evaluate. Parsed expressions
// are kept, so string results pointing at their literals stay valid.
struct Env {
  Env() : fields(kFieldCount), aggregates(2) {
    fields[kAmount] = Value::Number(7500);
    fields[kUserId] = Value::String("u1");
    fields[kCountry] = Value::String("DE");
    fields[kName] = Value::String("Alice");
    fields[kFlag] = Value::Bool(true);
    aggregates[kN] = Value::Number(4);
    aggregates[kTotal] = Value::Number(12000);
  }

  EvalInput Input() const { return EvalInput{fields, aggregates, new_values}; }

  const Expr& Parse(std::string_view text) {
    Result<Expr> expr = Expr::Parse(text, scope);
    INFO(text);
    INFO((expr.ok() ? "" : expr.status().message()));
    REQUIRE(expr.ok());
    exprs.push_back(std::move(expr).value());
    return exprs.back();
  }

  Value Eval(std::string_view text) { return Parse(text).Eval(Input(), scratch); }

  double Number(std::string_view text) {
    Value v = Eval(text);
    INFO(text);
    REQUIRE(v.is_number());
    return v.number;
  }

  bool Bool(std::string_view text) {
    Value v = Eval(text);
    INFO(text);
    REQUIRE(v.is_bool());
    return v.boolean;
  }

  bool IsNull(std::string_view text) { return Eval(text).is_null(); }

  std::string String(std::string_view text) {
    Value v = Eval(text);
    INFO(text);
    REQUIRE(v.is_string());
    return std::string(v.str);
  }

  std::string Error(std::string_view text) {
    Result<Expr> expr = Expr::Parse(text, scope);
    INFO(text);
    REQUIRE_FALSE(expr.ok());
    CHECK(expr.status().code() == StatusCode::kInvalidArgument);
    return expr.status().message();
  }

  TestScope scope;
  std::vector<Value> fields;
  std::vector<Value> aggregates;
  std::array<bool, 4> new_values = {};
  EvalScratch scratch;
  std::deque<Expr> exprs;
};

std::string Repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST_CASE("expr: literals", "[expr]") {
  Env env;
  CHECK(env.Number("5000") == 5000);
  CHECK(env.Number("0.5") == 0.5);
  CHECK(env.Number("1e3") == 1000);
  CHECK(env.Number("1E2") == 100);
  CHECK(env.Number("2.5e-1") == 0.25);
  CHECK(env.Number("1.5e+2") == 150);
  CHECK(env.Bool("true"));
  CHECK_FALSE(env.Bool("false"));
  CHECK(env.IsNull("null"));
  CHECK(env.String(R"("hello")") == "hello");
  CHECK(env.String(R"("")").empty());
  CHECK(env.String(R"("a\"b\\c\nd\te")") == "a\"b\\c\nd\te");
  CHECK(env.String(R"("é and ü")") == "é and ü");
}

TEST_CASE("expr: fields, paths and aggregates resolve to slots", "[expr]") {
  Env env;
  CHECK(env.Number("amount") == 7500);
  CHECK(env.String("user.id") == "u1");
  CHECK(env.String("country") == "DE");
  CHECK(env.Bool("flag"));
  CHECK(env.IsNull("missing"));
  CHECK(env.Number("n") == 4);
  CHECK(env.Number("total") == 12000);
  CHECK(env.Bool("n > 3 && total > 10000"));
  CHECK(env.Bool("amount > 5000 && user.id == \"u1\""));

  env.aggregates[kTotal] = Value::Number(50);
  CHECK_FALSE(env.Bool("n > 3 && total > 10000"));
}

TEST_CASE("expr: slots beyond the inputs read as null", "[expr]") {
  Env env;
  const Expr& field = env.Parse("amount");
  const Expr& aggregate = env.Parse("total");
  const Expr& new_value = env.Parse("new_value(country)");
  EvalInput empty;
  CHECK(field.Eval(empty, env.scratch).is_null());
  CHECK(aggregate.Eval(empty, env.scratch).is_null());
  CHECK(new_value.Eval(empty, env.scratch).is_null());
}

TEST_CASE("expr: arithmetic", "[expr]") {
  Env env;
  CHECK(env.Number("2 + 3") == 5);
  CHECK(env.Number("2 - 5") == -3);
  CHECK(env.Number("4 * 2.5") == 10);
  CHECK(env.Number("1 / 4") == 0.25);
  CHECK(env.Number("7 % 3") == 1);
  CHECK(env.Number("-7 % 3") == -1);
  CHECK(env.Number("7.5 % 2") == 1.5);
  CHECK(env.Number("-amount") == -7500);
  CHECK(env.Number("- -3") == 3);
  CHECK(env.Number("-(-3)") == 3);
  CHECK(env.Number("amount / 100") == 75);
}

TEST_CASE("expr: precedence and associativity", "[expr]") {
  Env env;
  CHECK(env.Number("1 + 2 * 3") == 7);
  CHECK(env.Number("(1 + 2) * 3") == 9);
  CHECK(env.Number("1 - 2 - 3") == -4);
  CHECK(env.Number("8 / 4 / 2") == 1);
  CHECK(env.Number("2 * 3 % 4") == 2);
  CHECK(env.Number("10 % 4 * 2") == 4);
  CHECK(env.Number("-1 + 3") == 2);
  CHECK(env.Number("-2 * 3") == -6);
  CHECK(env.Number("10 - 2 * 3 + 1") == 5);
  // || is looser than &&.
  CHECK(env.Bool("true || true && false"));
  CHECK_FALSE(env.Bool("false && true || false"));
  // ! binds tighter than &&.
  CHECK_FALSE(env.Bool("!false && false"));
  // < is tighter than ==.
  CHECK(env.Bool("1 < 2 == true"));
  CHECK(env.Bool("false == 2 < 1"));
  // in is tighter than <, looser than +.
  CHECK_FALSE(env.Bool("3 < 5 in [true]"));
  CHECK(env.Bool("1 + 2 in [3]"));
  CHECK(env.Bool("1 in [1] == true"));
  CHECK(env.Bool("amount / 100 in [75]"));
  // && is tighter than ||, comparisons tighter than &&.
  CHECK(env.Bool("amount > 5000 && country == \"DE\" || false"));
  CHECK(env.Bool("amount + 500 == 8000"));
}

TEST_CASE("expr: comparisons of numbers", "[expr]") {
  Env env;
  CHECK(env.Bool("1 == 1"));
  CHECK_FALSE(env.Bool("1 == 2"));
  CHECK(env.Bool("1 != 2"));
  CHECK_FALSE(env.Bool("1 != 1"));
  CHECK(env.Bool("1 < 2"));
  CHECK_FALSE(env.Bool("2 < 2"));
  CHECK(env.Bool("2 <= 2"));
  CHECK_FALSE(env.Bool("3 <= 2"));
  CHECK(env.Bool("3 > 2"));
  CHECK_FALSE(env.Bool("2 > 2"));
  CHECK(env.Bool("2 >= 2"));
  CHECK_FALSE(env.Bool("1 >= 2"));
  CHECK(env.Bool("0.1 + 0.2 > 0.3"));
  CHECK(env.Bool("amount > 5000"));
}

TEST_CASE("expr: comparisons of strings are bytewise", "[expr]") {
  Env env;
  CHECK(env.Bool(R"("abc" == "abc")"));
  CHECK(env.Bool(R"("abc" != "abd")"));
  CHECK(env.Bool(R"("abc" < "abd")"));
  CHECK(env.Bool(R"("ab" < "abc")"));
  CHECK(env.Bool(R"("B" < "a")"));
  CHECK(env.Bool(R"("é" > "z")"));
  CHECK(env.Bool(R"("b" >= "b")"));
  CHECK(env.Bool(R"("a" <= "b")"));
  CHECK_FALSE(env.Bool(R"("b" <= "a")"));
  CHECK(env.Bool(R"(country == "DE")"));
  CHECK_FALSE(env.Bool(R"(country == "de")"));
}

TEST_CASE("expr: bools compare with == and != only", "[expr]") {
  Env env;
  CHECK(env.Bool("true == true"));
  CHECK(env.Bool("true != false"));
  CHECK_FALSE(env.Bool("true == false"));
  CHECK_FALSE(env.Bool("false < true"));
  CHECK_FALSE(env.Bool("true > false"));
  CHECK_FALSE(env.Bool("true >= true"));
  CHECK(env.Bool("flag == true"));
}

TEST_CASE("expr: values of different types are unequal", "[expr]") {
  Env env;
  CHECK_FALSE(env.Bool(R"(1 == "1")"));
  CHECK(env.Bool(R"(1 != "1")"));
  CHECK_FALSE(env.Bool("true == 1"));
  CHECK(env.Bool("true != 1"));
  CHECK_FALSE(env.Bool(R"(1 < "2")"));
  CHECK_FALSE(env.Bool(R"("2" > 1)"));
}

TEST_CASE("expr: null semantics", "[expr]") {
  Env env;
  // A comparison with null is false, == and != included.
  CHECK_FALSE(env.Bool("missing == null"));
  CHECK_FALSE(env.Bool("null == null"));
  CHECK_FALSE(env.Bool("null != null"));
  CHECK_FALSE(env.Bool("missing != 1"));
  CHECK_FALSE(env.Bool("missing == 1"));
  CHECK_FALSE(env.Bool("missing < 1"));
  CHECK_FALSE(env.Bool("missing >= 1"));
  CHECK_FALSE(env.Bool("1 > missing"));
  // Arithmetic with null or a non-number is null.
  CHECK(env.IsNull("missing + 1"));
  CHECK(env.IsNull("1 - missing"));
  CHECK(env.IsNull("missing * 2"));
  CHECK(env.IsNull(R"("a" + "b")"));
  CHECK(env.IsNull("true + 1"));
  CHECK(env.IsNull("country * 2"));
  CHECK(env.IsNull("-missing"));
  CHECK(env.IsNull(R"(-"a")"));
  // Division and modulo by zero are null.
  CHECK(env.IsNull("1 / 0"));
  CHECK(env.IsNull("0 / 0"));
  CHECK(env.IsNull("1 % 0"));
  CHECK(env.IsNull("amount / (2 - 2)"));
  // A null spreads through arithmetic, and then compares false.
  CHECK_FALSE(env.Bool("amount / 0 > 1"));
  CHECK_FALSE(env.Bool("amount / 0 <= 1"));
  // ! of a non-bool is null.
  CHECK(env.IsNull("!missing"));
  CHECK(env.IsNull("!1"));
  CHECK(env.IsNull(R"(!"true")"));
  CHECK_FALSE(env.Bool("!true"));
  CHECK(env.Bool("!!true"));
  // A null or non-bool filter is false.
  CHECK_FALSE(env.Parse("missing").EvalBool(env.Input(), env.scratch));
  CHECK_FALSE(env.Parse("amount").EvalBool(env.Input(), env.scratch));
  CHECK(env.Parse("flag").EvalBool(env.Input(), env.scratch));
}

TEST_CASE("expr: && and || treat non-bools as false and yield bools", "[expr]") {
  Env env;
  CHECK(env.Bool("true && true"));
  CHECK_FALSE(env.Bool("true && false"));
  CHECK_FALSE(env.Bool("false && true"));
  CHECK(env.Bool("false || true"));
  CHECK(env.Bool("true || false"));
  CHECK_FALSE(env.Bool("false || false"));
  CHECK_FALSE(env.Bool("missing && true"));
  CHECK_FALSE(env.Bool("true && missing"));
  CHECK(env.Bool("missing || true"));
  CHECK_FALSE(env.Bool("missing || missing"));
  CHECK_FALSE(env.Bool("1 || false"));
  CHECK_FALSE(env.Bool("true && 1"));
  CHECK_FALSE(env.Bool(R"("x" && true)"));
  CHECK(env.Bool("true && true && true"));
  CHECK_FALSE(env.Bool("true && true && false"));
  CHECK(env.Bool("false || false || true"));
}

TEST_CASE("expr: && and || short-circuit", "[expr]") {
  // lower() is the only operation that leaves a trace: the bytes it takes from
  // the scratch. Each Eval resets the scratch first, so the next Allocate
  // shows whether lower() ran.
  Env env;
  env.fields[kName] = Value::String("ABCDEF");
  env.Eval("true");
  const char* base = env.scratch.Allocate(1);
  auto bytes_used_by = [&](std::string_view text) -> std::ptrdiff_t {
    env.Eval(text);
    return env.scratch.Allocate(1) - base;
  };
  CHECK(bytes_used_by(R"(lower(name) == "x")") == 6);
  CHECK(bytes_used_by(R"(true || lower(name) == "x")") == 0);
  CHECK(bytes_used_by(R"(false || lower(name) == "x")") == 6);
  CHECK(bytes_used_by(R"(false && lower(name) == "x")") == 0);
  CHECK(bytes_used_by(R"(missing && lower(name) == "x")") == 0);
  CHECK(bytes_used_by(R"(true && lower(name) == "x")") == 6);
}

TEST_CASE("expr: in", "[expr]") {
  Env env;
  CHECK(env.Bool(R"(country in ["DE", "FR"])"));
  CHECK(env.Bool(R"(country in ["FR", "DE"])"));
  CHECK_FALSE(env.Bool(R"(country in ["US", "FR"])"));
  CHECK(env.Bool("amount in [1, 7500]"));
  CHECK_FALSE(env.Bool(R"(amount in ["7500"])"));
  CHECK(env.Bool("3 in [1 + 2]"));
  CHECK(env.Bool("amount in [n, amount]"));
  CHECK_FALSE(env.Bool("country in []"));
  CHECK_FALSE(env.Bool("missing in [null]"));
  CHECK_FALSE(env.Bool("null in [1, null]"));
  CHECK_FALSE(env.Bool("1 in [missing]"));
  CHECK(env.Bool("(1 in [1]) in [true]"));
  CHECK(env.Bool("1 in [2] in [false]"));
  CHECK(env.Bool("!(country in [\"US\"])"));
  CHECK(env.Bool("amount in [(1 in [1]) || true, 7500]"));
}

TEST_CASE("expr: exists", "[expr]") {
  Env env;
  CHECK(env.Bool("exists(amount)"));
  CHECK(env.Bool("exists(user.id)"));
  CHECK_FALSE(env.Bool("exists(missing)"));
  CHECK(env.Bool("exists(total)"));
  env.aggregates[kTotal] = Value::Null();
  CHECK_FALSE(env.Bool("exists(total)"));
  CHECK(env.Bool("!exists(missing) && exists(country)"));
}

TEST_CASE("expr: lower", "[expr]") {
  Env env;
  CHECK(env.String("lower(name)") == "alice");
  CHECK(env.Bool(R"(lower(name) == "alice")"));
  CHECK(env.String(R"(lower("MiXeD 123_Z"))") == "mixed 123_z");
  CHECK(env.String(R"(lower("ÄBC"))") == "Äbc");
  CHECK(env.String(R"(lower(""))").empty());
  CHECK(env.String("lower(lower(name))") == "alice");
  CHECK(env.IsNull("lower(amount)"));
  CHECK(env.IsNull("lower(missing)"));
  CHECK(env.IsNull("lower(true)"));
  // The argument is untouched.
  CHECK(env.String("name") == "Alice");
}

TEST_CASE("expr: abs", "[expr]") {
  Env env;
  CHECK(env.Number("abs(-3.5)") == 3.5);
  CHECK(env.Number("abs(2)") == 2);
  CHECK(env.Number("abs(amount)") == 7500);
  CHECK(env.Number("abs(1 - amount)") == 7499);
  CHECK(env.IsNull("abs(missing)"));
  CHECK(env.IsNull(R"(abs("x"))"));
  CHECK(env.Bool("abs(-2) * 2 == 4"));
}

TEST_CASE("expr: new_value reads the slot the scope gives", "[expr]") {
  Env env;
  const Expr& country = env.Parse("new_value(country)");
  const Expr& user = env.Parse("n > 1 && new_value(user.id)");
  REQUIRE(env.scope.new_value_paths == std::vector<std::string>{"country", "user.id"});

  env.new_values = {true, false};
  CHECK(country.Eval(env.Input(), env.scratch).IsTrue());
  CHECK(country.Eval(env.Input(), env.scratch).is_bool());
  CHECK_FALSE(user.EvalBool(env.Input(), env.scratch));

  env.new_values = {false, true};
  Value v = country.Eval(env.Input(), env.scratch);
  CHECK(v.is_bool());
  CHECK_FALSE(v.boolean);
  CHECK(user.EvalBool(env.Input(), env.scratch));
}

TEST_CASE("expr: long flat chains parse and evaluate", "[expr]") {
  Env env;
  std::string sum = "amount" + Repeat(" + amount", 499);
  CHECK(env.Number(sum) == 500 * 7500);

  std::string ors = "amount == 0";
  for (int i = 1; i < 500; ++i) ors += " || amount == " + std::to_string(i);
  CHECK_FALSE(env.Bool(ors));
  CHECK(env.Bool(ors + " || amount == 7500"));

  std::string list = "amount in [0";
  for (int i = 1; i < 500; ++i) list += ", " + std::to_string(i);
  CHECK_FALSE(env.Bool(list + "]"));
  CHECK(env.Bool(list + ", 7500]"));
}

TEST_CASE("expr: text and moves", "[expr]") {
  TestScope scope;
  Result<Expr> parsed = Expr::Parse(R"(lower("HeLLo") + "x")", scope);
  REQUIRE(parsed.ok());
  CHECK(parsed->text() == R"(lower("HeLLo") + "x")");

  Result<Expr> literal = Expr::Parse(R"("a string literal")", scope);
  REQUIRE(literal.ok());
  Expr moved = std::move(literal).value();
  Expr assigned;
  CHECK(assigned.text().empty());
  EvalScratch scratch;
  CHECK(assigned.Eval(EvalInput{}, scratch).is_null());
  assigned = std::move(moved);
  Value v = assigned.Eval(EvalInput{}, scratch);
  REQUIRE(v.is_string());
  CHECK(v.str == "a string literal");
  CHECK(assigned.text() == R"("a string literal")");
}

TEST_CASE("expr: parse errors name the column", "[expr][errors]") {
  Env env;
  SECTION("missing closing parenthesis") {
    CHECK(env.Error("(amount") == "column 8: expected ')', got end of input");
    CHECK(env.Error("abs(amount") == "column 11: expected ')', got end of input");
    CHECK(env.Error("(1 + 2 3") == "column 8: expected ')', got '3'");
  }
  SECTION("missing operand") {
    CHECK(env.Error("1 * * 2") == "column 5: expected an expression, got '*'");
    CHECK(env.Error("amount +* 2") == "column 9: expected an expression, got '*'");
    CHECK(env.Error("") == "column 1: expected an expression, got end of input");
    CHECK(env.Error("   ") == "column 4: expected an expression, got end of input");
    CHECK(env.Error("amount >") == "column 9: expected an expression, got end of input");
    CHECK(env.Error("()") == "column 2: expected an expression, got ')'");
    CHECK(env.Error("lower()") == "column 7: expected an expression, got ')'");
    CHECK(env.Error("amount > ]") == "column 10: expected an expression, got ']'");
  }
  SECTION("trailing junk") {
    CHECK(env.Error("amount 5") == "column 8: expected end of expression, got '5'");
    CHECK(env.Error("(1))") == "column 4: expected end of expression, got ')'");
    CHECK(env.Error("amount = 5") == "column 8: expected end of expression, got '='");
    CHECK(env.Error("amount & 1") == "column 8: expected end of expression, got '&'");
    CHECK(env.Error("flag | flag") == "column 6: expected end of expression, got '|'");
    CHECK(env.Error("5.") == "column 2: expected end of expression, got '.'");
    CHECK(env.Error("amount.") == "column 7: expected end of expression, got '.'");
    CHECK(env.Error("1 2") == "column 3: expected end of expression, got '2'");
  }
  SECTION("long tokens are shortened") {
    std::string name(40, 'x');
    CHECK(env.Error("amount " + name) ==
          "column 8: expected end of expression, got '" + std::string(32, 'x') + "...'");
  }
  SECTION("columns count characters, not bytes") {
    CHECK(env.Error(R"("é" == @)") == "column 8: expected an expression, got '@'");
    CHECK(env.Error(R"("é" == ü)") == "column 8: expected an expression, got 'ü'");
  }
  SECTION("unknown function") {
    CHECK(env.Error("foo(1)") ==
          "column 1: unknown function 'foo' (functions: exists, new_value, "
          "lower, abs)");
    CHECK(env.Error("amount > 1 && count()") ==
          "column 15: unknown function 'count' (functions: exists, "
          "new_value, lower, abs)");
    CHECK(env.Error("amount(1)") ==
          "column 1: unknown function 'amount' (functions: exists, "
          "new_value, lower, abs)");
  }
  SECTION("bad function arguments") {
    CHECK(env.Error("abs(1, 2)") == "column 6: expected ')', got ','");
    CHECK(env.Error("exists(1)") == "column 8: expected a field path, got '1'");
    CHECK(env.Error("exists(true)") == "column 8: expected a field path, got 'true'");
    CHECK(env.Error("exists(amount + 1)") == "column 15: expected ')', got '+'");
    CHECK(env.Error("new_value(1)") == "column 11: expected a field path, got '1'");
    CHECK(env.Error("exists()") == "column 8: expected a field path, got ')'");
  }
  SECTION("in lists") {
    CHECK(env.Error(R"(country in ["DE", "FR")") ==
          "column 23: expected ',' or ']', got end of input");
    CHECK(env.Error(R"(country in ["DE" "FR"])") ==
          R"(column 18: expected ',' or ']', got '"FR"')");
    CHECK(env.Error(R"(country in "DE")") == R"(column 12: expected '[', got '"DE"')");
    CHECK(env.Error("country in [,]") == "column 13: expected an expression, got ','");
    CHECK(env.Error("country in [1,]") == "column 15: expected an expression, got ']'");
  }
  SECTION("malformed literals") {
    CHECK(
        env.Error(R"(name == "abc)") ==
        R"(column 13: expected '"' to close the string that starts at column 9, got end of input)");
    CHECK(
        env.Error(R"("abc\)") ==
        R"(column 6: expected '"' to close the string that starts at column 1, got end of input)");
    CHECK(env.Error(R"(name == "a\qb")") == R"(column 11: expected one of \" \\ \n \t, got '\q')");
    CHECK(env.Error("1e999 > 1") == "column 1: number '1e999' is out of range");
    // A malformed literal is reported where the parser reaches it.
    CHECK(
        env.Error(R"(amount "abc)") ==
        R"(column 12: expected '"' to close the string that starts at column 8, got end of input)");
  }
}

TEST_CASE("expr: unknown names", "[expr][errors]") {
  Env env;
  CHECK(env.Error("nope > 1") == "column 1: unknown name 'nope'");
  CHECK(env.Error("amount > 1 && user.name == 2") == "column 15: unknown name 'user.name'");
  CHECK(env.Error("exists(nope)") == "column 8: unknown name 'nope'");
  env.scope.hint = "(aggregates here: n, total)";
  CHECK(env.Error("nope") == "column 1: unknown name 'nope' (aggregates here: n, total)");
  env.scope.hint = " (aggregates here: n total)";
  CHECK(env.Error("nope") == "column 1: unknown name 'nope' (aggregates here: n total)");
}

TEST_CASE("expr: new_value outside a rolling window", "[expr][errors]") {
  Env env;
  env.scope.allow_new_value = false;
  CHECK(env.Error("n > 1 && new_value(country)") ==
        "column 10: new_value() is only allowed in rules with a rolling "
        "window");
}

TEST_CASE("expr: nesting and stack limits", "[expr][errors]") {
  Env env;
  SECTION("parentheses") {
    CHECK(env.Number(Repeat("(", 63) + "1" + Repeat(")", 63)) == 1);
    CHECK(env.Error(Repeat("(", 64) + "1" + Repeat(")", 64)) ==
          "column 65: expression is nested too deeply (more than 64 levels)");
  }
  SECTION("unary operators") {
    CHECK(env.Bool(Repeat("!", 62) + "true"));
    CHECK(env.Error(Repeat("!", 64) + "true") ==
          "column 65: expression is nested too deeply (more than 64 levels)");
    CHECK(env.Error(Repeat("-", 100) + "1") ==
          "column 65: expression is nested too deeply (more than 64 levels)");
  }
  SECTION("values pending at once") {
    // Each "1 + 2 * (" leaves two values waiting for the parenthesis.
    auto nested = [](int levels) {
      return Repeat("1 + 2 * (", levels) + "1" + Repeat(")", levels);
    };
    CHECK(env.Number(nested(31)) > 0);
    std::string text = nested(32);
    std::string column = std::to_string(32 * 9 + 1);
    CHECK(env.Error(text) == "column " + column +
                                 ": expression is too complex: it needs more than 64 values at "
                                 "once; split it or use fewer parentheses");
  }
}

TEST_CASE("expr: a warmed scratch serves many evaluations", "[expr]") {
  Env env;
  const Expr& expr =
      env.Parse(R"(lower(name) == "carol-3" || lower(name) in ["alice-7", "bob-7"])");
  const Expr& twice = env.Parse("lower(name) < lower(country)");
  int matches = 0;
  for (int i = 0; i < 10000; ++i) {
    std::string name = (i % 2 == 0 ? "ALICE-" : "Carol-") + std::to_string(i % 9);
    env.fields[kName] = Value::String(name);
    bool expected = name == "ALICE-7" || name == "Carol-3";
    matches += expected ? 1 : 0;
    REQUIRE(expr.EvalBool(env.Input(), env.scratch) == expected);
    // Both "alice-…" and "carol-…" sort before "de".
    REQUIRE(twice.EvalBool(env.Input(), env.scratch));
  }
  CHECK(matches > 1000);

  // Strings larger than the scratch's first buffer.
  std::string big(10000, 'Q');
  std::string big_lower(10000, 'q');
  env.fields[kName] = Value::String(big);
  std::string big_country = big + "R";
  env.fields[kCountry] = Value::String(big_country);
  const Expr& both = env.Parse("lower(name) + lower(country)");
  const Expr& pair = env.Parse("lower(country) > lower(name)");
  const Expr& one = env.Parse("lower(country)");
  for (int i = 0; i < 100; ++i) {
    REQUIRE(both.Eval(env.Input(), env.scratch).is_null());
    REQUIRE(pair.EvalBool(env.Input(), env.scratch));
    Value v = one.Eval(env.Input(), env.scratch);
    REQUIRE(v.is_string());
    REQUIRE(v.str == big_lower + "r");
  }
}

TEST_CASE("EvalScratch: allocations do not overlap and are reused", "[expr][scratch]") {
  EvalScratch scratch;
  // Within one round every allocation is distinct, even past the first buffer.
  std::vector<std::pair<char*, size_t>> chunks;
  for (size_t n : {100, 3000, 2000, 5000, 1, 0, 700}) {
    char* p = scratch.Allocate(n);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>(chunks.size());
    chunks.emplace_back(p, n);
  }
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (size_t i = 0; i < chunks[c].second; ++i) {
      REQUIRE(chunks[c].first[i] == static_cast<char>(c));
    }
  }

  // After a few rounds of the same demand the same memory comes back.
  auto round = [&] {
    scratch.Reset();
    std::vector<const void*> ptrs;
    for (size_t n : {6000, 6000, 10}) ptrs.push_back(scratch.Allocate(n));
    return ptrs;
  };
  std::vector<const void*> previous = round();
  for (int i = 0; i < 4; ++i) previous = round();
  CHECK(round() == previous);
  CHECK(round() == previous);
}

}  // namespace
}  // namespace sluice::engine

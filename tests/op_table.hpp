#pragma once
// The op table: one declarative list of cases for the primitives of ops<B>,
// and one harness that runs every case through every check (the layout of
// ggml's tests/test-backend-ops.cpp).
//
// A case (OpCase) names its op and variant, declares its arguments (shape,
// element type, how the values are drawn, which are outputs), and gives
//   forward    (io, O) -> runs the op on a backend; io hands out the arguments
//                        as views of that backend, O is ops<B>
//   backward   (io, O) -> optional: after forward, writes or adds the gradient
//                        of L = sum_k <out_k, dout_k> + sum_s dscalar_s * s
//                        into io.grad(name) for the arguments marked grad()
//   reference  (r)     -> the same outputs in plain loops over doubles
// plus tolerances, the outputs that may alias an input, and the argument
// changes (bad shapes, bad ids) that must raise a plm::Error with given words.
//
// The harness (the check_* functions below) checks each case:
//   - against its naive reference, running the op in float and in double;
//   - the float backward against the double backward on the same inputs;
//   - finite differences in double (plm::testing::check_gradient) for every
//     case with a backward whose differentiated inputs are small enough;
//   - the same results with 1 and 2 CPU threads, bit for bit unless the
//     entry allows a difference (and says why);
//   - in place (output aliasing an input) bit for bit as out of place;
//   - each error case, on every backend, with the same message;
//   - every other backend against the CPU (test_cuda.cpp), within the
//     backend tolerance.
// A failure names the op, the variant, the argument shapes and the worst
// element. Adding an op is adding one entry to op_table() at the end.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "plm/backend/cpu/ops.hpp"
#include "plm/core/philox.hpp"
#include "plm/testing/gradient_check.hpp"

namespace plm::test::optable {

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

// `compute` is the type the case runs in (float or double); the others are fixed.
enum class Dtype { compute, f32, f64, bf16, i32, u8 };
// output: compared and part of the loss; aux: compared only; scratch: neither.
enum class Role { input, output, aux, scratch };
// How backward delivers an input's gradient: written, or added to what is there.
enum class Grad { none, writes, adds };

// Fills the master values (doubles) of an argument; `stream` is the argument's
// own Philox stream, derived from the case and argument names.
using Init = std::function<void(TensorView<cpu, double>, std::uint64_t stream)>;

inline constexpr std::uint64_t seed = 2024;

inline Init uniform(double lo = -1, double hi = 1) {
  return [=](TensorView<cpu, double> x, std::uint64_t stream) { testing::fill_uniform<double>(x, seed, stream, lo, hi); };
}
inline Init constant(double v) {
  return [=](TensorView<cpu, double> x, std::uint64_t) { std::fill(x.data(), x.data() + x.numel(), v); };
}
// Exactly these values, in order (their count must be the argument's size).
inline Init values(std::vector<double> v) {
  return [v](TensorView<cpu, double> x, std::uint64_t) {
    PLM_CHECK(static_cast<index_t>(v.size()) == x.numel(), "op table: ", v.size(), " values for an argument of shape ",
              x.shape());
    std::copy(v.begin(), v.end(), x.data());
  };
}
// Uniform integers in [0, n): ids and targets.
inline Init below(index_t n) {
  return [=](TensorView<cpu, double> x, std::uint64_t stream) {
    Philox rng(seed, stream);
    for (index_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<double>(rng.below(static_cast<std::uint64_t>(n)));
  };
}
// base, then the listed (flat index, value) pairs.
inline Init with(Init base, std::vector<std::pair<index_t, double>> set) {
  return [=](TensorView<cpu, double> x, std::uint64_t stream) {
    base(x, stream);
    for (auto [i, v] : set) x.data()[i] = v;
  };
}
// base with every |x| < gap moved to +-gap: keeps central differences off a kink at 0.
inline Init away_from_zero(Init base, double gap) {
  return [=](TensorView<cpu, double> x, std::uint64_t stream) {
    base(x, stream);
    for (index_t i = 0; i < x.numel(); ++i)
      if (std::abs(x.data()[i]) < gap) x.data()[i] = x.data()[i] < 0 ? -gap : gap;
  };
}
// Value from the element's coordinates (masks, targets with a pattern).
inline Init each(std::function<double(const std::vector<index_t>& idx)> f) {
  return [f](TensorView<cpu, double> x, std::uint64_t) {
    const Shape s = x.shape();
    std::vector<index_t> idx(static_cast<std::size_t>(s.rank()), 0);
    for (index_t i = 0; i < x.numel(); ++i) {
      index_t rest = i;
      for (int d = s.rank() - 1; d >= 0; --d) {
        idx[static_cast<std::size_t>(d)] = rest % s[d];
        rest /= s[d];
      }
      x.data()[i] = f(idx);
    }
  };
}

struct Arg {
  std::string name;
  Shape shape;
  Dtype dtype = Dtype::compute;
  Role role = Role::input;
  Init init;  // empty: poison (NaN, or an out-of-range integer) so unwritten elements show
  Grad grad = Grad::none;
};

struct Scalar {
  std::string name;
  bool in_loss = false;
};

// A change to one argument for an error case: a new shape, or one value set.
// "grad NAME" and "dout NAME" address the gradient buffers of the backward.
struct Change {
  std::string arg;
  bool is_reshape = true;
  Shape shape;
  index_t index = 0;
  double value = 0;
};
inline Change reshape(std::string arg, Shape s) { return {std::move(arg), true, s, 0, 0}; }
inline Change set(std::string arg, index_t index, double value) { return {std::move(arg), false, {}, index, value}; }

struct ErrorCase {
  std::vector<Change> changes;
  std::vector<std::string> parts;  // the message must contain each
  bool in_backward() const {
    for (const auto& c : changes)
      if (c.arg.rfind("grad ", 0) == 0 || c.arg.rfind("dout ", 0) == 0) return true;
    return false;
  }
};

// ---------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------

template <class U>
U cast_to(double v) {
  if constexpr (std::is_same_v<U, bf16>)
    return bf16(static_cast<float>(v));
  else
    return static_cast<U>(v);
}
template <class U>
double cast_from(U v) {
  if constexpr (std::is_same_v<U, bf16>)
    return static_cast<double>(static_cast<float>(v));
  else
    return static_cast<double>(v);
}

// Calls f(U{}) with the storage type of d when the case computes in T.
template <class T, class F>
decltype(auto) with_dtype(Dtype d, F&& f) {
  switch (d) {
    case Dtype::f32:
      return f(float{});
    case Dtype::f64:
      return f(double{});
    case Dtype::bf16:
      return f(bf16{});
    case Dtype::i32:
      return f(std::int32_t{});
    case Dtype::u8:
      return f(std::uint8_t{});
    default:
      return f(T{});
  }
}

inline bool is_integer(Dtype d) { return d == Dtype::i32 || d == Dtype::u8; }
inline double poison(Dtype d) {
  if (d == Dtype::i32) return -7777;
  if (d == Dtype::u8) return 171;
  return std::numeric_limits<double>::quiet_NaN();
}
template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

// ---------------------------------------------------------------------------
// Io: the arguments of one run on backend B in type T, as the case sees them
// ---------------------------------------------------------------------------

template <class B>
using AnyTensor =
    std::variant<Tensor<B, float>, Tensor<B, double>, Tensor<B, bf16>, Tensor<B, std::int32_t>, Tensor<B, std::uint8_t>>;

template <class B, class T>
class Io {
 public:
  using backend = B;
  using value_type = T;

  // Arguments of the compute type (inputs read, outputs written).
  ConstView<B, T> in(const std::string& n) const { return view<T>(n); }
  TensorView<B, T> out(const std::string& n) const { return view<T>(n); }
  // Arguments of a fixed type.
  ConstView<B, std::int32_t> ids(const std::string& n) const { return view<std::int32_t>(n); }
  ConstView<B, std::uint8_t> mask(const std::string& n) const { return view<std::uint8_t>(n); }
  TensorView<B, std::uint8_t> as_u8(const std::string& n) const { return view<std::uint8_t>(n); }
  TensorView<B, std::int32_t> as_i32(const std::string& n) const { return view<std::int32_t>(n); }
  TensorView<B, float> as_f32(const std::string& n) const { return view<float>(n); }
  TensorView<B, double> as_f64(const std::string& n) const { return view<double>(n); }
  TensorView<B, bf16> as_bf16(const std::string& n) const { return view<bf16>(n); }
  // Backward: the weight of output n in the loss, and the gradient buffer of input n.
  ConstView<B, T> dout(const std::string& n) const { return find(douts_, n, "dout"); }
  TensorView<B, T> grad(const std::string& n) const { return find(grads_, n, "grad"); }
  double dscalar(const std::string& n) const { return find(dscalars_, n, "dscalar"); }
  // Scalar results (sums, counts) go here.
  void set_scalar(const std::string& n, double v) { scalars_[n] = v; }

  static T t(double v) { return static_cast<T>(v); }
  static TensorView<B, T> none() { return {}; }
  static SoftmaxMask<B, T> softmax_mask() { return {}; }
  static CrossEntropyRows<B, T> cross_entropy_rows() { return {}; }

  template <class U>
  TensorView<B, U> view(const std::string& n) const {
    auto a = alias_.find(n);
    const std::string& key = a == alias_.end() ? n : a->second;
    auto it = args_.find(key);
    PLM_CHECK(it != args_.end(), "op table: the case has no argument ", key);
    const auto* t = std::get_if<Tensor<B, U>>(&it->second);
    PLM_CHECK(t, "op table: argument ", key, " is not stored in the type the case asks for");
    if (a == alias_.end()) return t->view();
    return t->view().reshape(shapes_.at(n));  // an output living in an input's buffer
  }

  std::map<std::string, AnyTensor<B>> args_;
  std::map<std::string, Shape> shapes_;
  std::map<std::string, std::string> alias_;  // output -> the input whose buffer it uses
  std::map<std::string, Tensor<B, T>> douts_, grads_;
  std::map<std::string, double> scalars_, dscalars_;

 private:
  template <class M>
  static auto find(const M& m, const std::string& n, const char* what) -> decltype(m.begin()->second.view()) {
    auto it = m.find(n);
    PLM_CHECK(it != m.end(), "op table: no ", what, " for ", n);
    return it->second.view();
  }
  static double find(const std::map<std::string, double>& m, const std::string& n, const char* what) {
    auto it = m.find(n);
    PLM_CHECK(it != m.end(), "op table: no ", what, " for ", n);
    return it->second;
  }
};

// The reference's view of a case: every argument as doubles on the host,
// already rounded to the type the op sees.
class Ref {
 public:
  ConstView<cpu, double> in(const std::string& n) const { return get(n); }
  TensorView<cpu, double> out(const std::string& n) const { return get(n); }
  index_t id(const std::string& n, index_t i) const { return static_cast<index_t>(get(n).data()[i]); }
  void set_scalar(const std::string& n, double v) { scalars_[n] = v; }

  std::map<std::string, Tensor<cpu, double>> args_;
  std::map<std::string, double> scalars_;

 private:
  TensorView<cpu, double> get(const std::string& n) const {
    auto it = args_.find(n);
    PLM_CHECK(it != args_.end(), "op table: the reference asks for ", n, ", which the case does not declare");
    return it->second.view();
  }
};

// ---------------------------------------------------------------------------
// OpCase
// ---------------------------------------------------------------------------

template <class B>
struct Runners {
  std::function<void(Io<B, float>&)> forward_f, backward_f;
  std::function<void(Io<B, double>&)> forward_d, backward_d;
};

// One entry of the table. Bs: the backends it is compiled for (cpu first).
template <class... Bs>
class OpCase {
 public:
  OpCase(std::string op, std::string variant) : op_(std::move(op)), variant_(std::move(variant)) {}

  // ---- declaring arguments ----
  OpCase& in(std::string n, Shape s, Init init = uniform()) {
    return arg({std::move(n), s, Dtype::compute, Role::input, std::move(init)});
  }
  OpCase& in(std::string n, Shape s, Dtype d, Init init) { return arg({std::move(n), s, d, Role::input, std::move(init)}); }
  OpCase& ids(std::string n, Shape s, Init init) { return arg({std::move(n), s, Dtype::i32, Role::input, std::move(init)}); }
  OpCase& mask(std::string n, Shape s, Init init) { return arg({std::move(n), s, Dtype::u8, Role::input, std::move(init)}); }
  // An output in the loss; init gives its starting contents (for ops that accumulate).
  OpCase& out(std::string n, Shape s, Init init = {}) {
    return arg({std::move(n), s, Dtype::compute, Role::output, std::move(init)});
  }
  OpCase& aux(std::string n, Shape s, Dtype d = Dtype::compute, Init init = {}) {
    return arg({std::move(n), s, d, Role::aux, std::move(init)});
  }
  OpCase& scratch(std::string n, Shape s) { return arg({std::move(n), s, Dtype::compute, Role::scratch, {}}); }
  OpCase& scalar(std::string n, bool in_loss = false) {
    scalars_.push_back({std::move(n), in_loss});
    return *this;
  }
  // backward writes (grad) or adds into (grad_adds) the gradient of input n.
  OpCase& grad(const std::string& n) { return mark(n, Grad::writes); }
  OpCase& grad_adds(const std::string& n) { return mark(n, Grad::adds); }
  // Output `out` may share the buffer of input `in`.
  OpCase& alias(std::string out, std::string in) {
    aliases_.emplace_back(std::move(out), std::move(in));
    return *this;
  }

  // ---- tolerances: |got - want| / max(1, |want|) ----
  OpCase& tolerance(double f, double d) {
    tol_f_ = f, tol_d_ = d;
    return *this;
  }
  OpCase& backend_tolerance(double f, double d) {
    backend_f_ = f, backend_d_ = d;
    return *this;
  }
  // Other backends must give the CPU's results bit for bit.
  OpCase& exact() { return backend_tolerance(0, 0); }
  // Allowed difference between runs on 1 and 2 CPU threads (0 unless the op
  // documents otherwise: say why where it is set).
  OpCase& thread_tolerance(double f, double d) {
    threads_f_ = f, threads_d_ = d;
    return *this;
  }

  // ---- error cases ----
  OpCase& error(std::vector<Change> changes, std::vector<std::string> parts) {
    errors_.push_back({std::move(changes), std::move(parts)});
    return *this;
  }

  // ---- the op ----
  template <class F>
  OpCase& forward(F f) {
    (set_forward<Bs>(f), ...);
    return *this;
  }
  template <class F>
  OpCase& backward(F f) {
    (set_backward<Bs>(f), ...);
    has_backward_ = true;
    return *this;
  }
  OpCase& reference(std::function<void(Ref&)> f) {
    reference_ = std::move(f);
    return *this;
  }

  // ---- what the harness reads ----
  const std::string& op() const { return op_; }
  const std::string& variant() const { return variant_; }
  std::string title() const { return op_ + " [" + variant_ + "]"; }
  // "x (3, 4), w (4,) -> y (3, 4)": the argument shapes, for messages.
  std::string signature() const {
    std::ostringstream in, out;
    for (const Arg& a : args_) {
      std::ostringstream& os = a.role == Role::input ? in : out;
      if (a.role == Role::scratch) continue;
      os << (os.tellp() > 0 ? ", " : "") << a.name << " " << a.shape;
    }
    for (const Scalar& sc : scalars_) out << (out.tellp() > 0 ? ", " : "") << sc.name;
    return in.str() + " -> " + out.str();
  }
  const std::vector<Arg>& args() const { return args_; }
  const Arg& arg_named(const std::string& n) const {
    for (const Arg& a : args_)
      if (a.name == n) return a;
    PLM_FAIL("op table: ", title(), " has no argument ", n);
  }
  const std::vector<Scalar>& scalars() const { return scalars_; }
  const std::vector<std::pair<std::string, std::string>>& aliases() const { return aliases_; }
  const std::vector<ErrorCase>& errors() const { return errors_; }
  bool has_backward() const { return has_backward_; }
  bool has_reference() const { return static_cast<bool>(reference_); }
  // A case with no reference only exists for its error cases.
  bool error_only() const { return !reference_; }
  template <class T>
  double tolerance() const {
    return std::is_same_v<T, float> ? tol_f_ : tol_d_;
  }
  template <class T>
  double backend_tolerance() const {
    return std::is_same_v<T, float> ? backend_f_ : backend_d_;
  }
  template <class T>
  double thread_tolerance() const {
    return std::is_same_v<T, float> ? threads_f_ : threads_d_;
  }
  void run_reference(Ref& r) const { reference_(r); }
  template <class B, class T>
  void run_forward(Io<B, T>& io) const {
    runner<B, T>(true)(io);
  }
  template <class B, class T>
  void run_backward(Io<B, T>& io) const {
    runner<B, T>(false)(io);
  }

 private:
  OpCase& arg(Arg a) {
    for (const Arg& b : args_) PLM_CHECK(b.name != a.name, "op table: ", title(), " declares ", a.name, " twice");
    args_.push_back(std::move(a));
    return *this;
  }
  OpCase& mark(const std::string& n, Grad g) {
    for (Arg& a : args_)
      if (a.name == n) {
        PLM_CHECK(a.role == Role::input && a.dtype == Dtype::compute, "op table: ", title(), ": ", n,
                  " is not an input of the compute type and has no gradient");
        a.grad = g;
        return *this;
      }
    PLM_FAIL("op table: ", title(), " has no input ", n);
  }
  template <class B, class F>
  void set_forward(F f) {
    auto& r = std::get<Runners<B>>(runners_);
    r.forward_f = [f](Io<B, float>& io) { f(io, ops<B>{}); };
    r.forward_d = [f](Io<B, double>& io) { f(io, ops<B>{}); };
  }
  template <class B, class F>
  void set_backward(F f) {
    auto& r = std::get<Runners<B>>(runners_);
    r.backward_f = [f](Io<B, float>& io) { f(io, ops<B>{}); };
    r.backward_d = [f](Io<B, double>& io) { f(io, ops<B>{}); };
  }
  template <class B, class T>
  const std::function<void(Io<B, T>&)>& runner(bool fwd) const {
    const auto& r = std::get<Runners<B>>(runners_);
    if constexpr (std::is_same_v<T, float>)
      return fwd ? r.forward_f : r.backward_f;
    else
      return fwd ? r.forward_d : r.backward_d;
  }

  std::string op_, variant_;
  std::vector<Arg> args_;
  std::vector<Scalar> scalars_;
  std::vector<std::pair<std::string, std::string>> aliases_;
  std::vector<ErrorCase> errors_;
  std::tuple<Runners<Bs>...> runners_;
  std::function<void(Ref&)> reference_;
  bool has_backward_ = false;
  double tol_f_ = 2e-5, tol_d_ = 1e-12, backend_f_ = 1e-5, backend_d_ = 1e-10, threads_f_ = 0, threads_d_ = 0;
};

// ---------------------------------------------------------------------------
// Host data of a case, and results of a run
// ---------------------------------------------------------------------------

struct HostArray {
  Shape shape;
  Dtype dtype = Dtype::compute;
  std::vector<double> v;
};

// The master values of one case: arguments (inputs and the starting contents
// of outputs), the loss weights, and the starting contents of the gradients.
struct Values {
  std::map<std::string, HostArray> args, douts, grad_init;
  std::map<std::string, double> dscalars;
};

// What a run produced: outputs by name, gradients as "grad NAME", scalars.
struct Result {
  std::map<std::string, HostArray> arrays;
  std::map<std::string, double> scalars;
};

inline std::uint64_t stream_of(const std::string& title, const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across runs and table edits
  for (char ch : title + "/" + name) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

inline HostArray make_array(const Shape& s, Dtype d, const Init& init, std::uint64_t stream) {
  HostArray h{s, d, std::vector<double>(static_cast<std::size_t>(s.numel()), poison(d))};
  if (init) init(TensorView<cpu, double>(h.v.data(), s), stream);
  return h;
}

template <class Case>
Values make_values(const Case& c) {
  Values v;
  const std::string t = c.title();
  for (const Arg& a : c.args()) {
    v.args[a.name] = make_array(a.shape, a.dtype, a.init, stream_of(t, a.name));
    if (a.role == Role::output && a.dtype == Dtype::compute)
      v.douts[a.name] = make_array(a.shape, Dtype::compute, uniform(), stream_of(t, "dout " + a.name));
    if (a.grad != Grad::none)
      v.grad_init[a.name] =
          make_array(a.shape, Dtype::compute, a.grad == Grad::adds ? uniform() : Init{}, stream_of(t, "grad " + a.name));
  }
  for (const Scalar& s : c.scalars())
    if (s.in_loss) {
      double w = 0;
      testing::fill_uniform<double>(TensorView<cpu, double>(&w, Shape{1}), seed, stream_of(t, "dscalar " + s.name), 0.5, 1.5);
      v.dscalars[s.name] = w;
    }
  return v;
}

// h as a run in T stores it: rounded to its storage type.
template <class T>
HostArray rounded(HostArray h) {
  with_dtype<T>(h.dtype, [&](auto tag) {
    using U = decltype(tag);
    if (!is_integer(h.dtype))
      for (double& x : h.v) x = cast_from<U>(cast_to<U>(x));
  });
  return h;
}

// The values as a run in T sees them.
template <class T>
Values rounded(Values v) {
  for (auto* m : {&v.args, &v.douts, &v.grad_init})
    for (auto& [n, h] : *m) h = rounded<T>(std::move(h));
  for (auto& [n, w] : v.dscalars) w = static_cast<double>(static_cast<T>(w));
  return v;
}

template <class B, class U>
Tensor<B, U> upload_array(const HostArray& h) {
  std::vector<U> tmp(h.v.size());
  for (std::size_t i = 0; i < tmp.size(); ++i) tmp[i] = cast_to<U>(h.v[i]);
  Tensor<B, U> t(h.shape);
  upload(tmp.data(), t.view());
  return t;
}
template <class B, class U>
HostArray download_array(ConstView<B, U> x, Dtype d) {
  std::vector<U> tmp(static_cast<std::size_t>(x.numel()));
  download(x, tmp.data());
  HostArray h{x.shape(), d, std::vector<double>(tmp.size())};
  for (std::size_t i = 0; i < tmp.size(); ++i) h.v[i] = cast_from<U>(tmp[i]);
  return h;
}

// Applies the changes addressed to `key` to a copy of h (a new shape redraws
// the values with the same init).
inline HostArray changed(HostArray h, const std::string& key, const std::vector<Change>& changes, const Init& init,
                         std::uint64_t stream) {
  for (const Change& c : changes)
    if (c.arg == key && c.is_reshape) h = make_array(c.shape, h.dtype, init, stream);
  for (const Change& c : changes)
    if (c.arg == key && !c.is_reshape) h.v.at(static_cast<std::size_t>(c.index)) = c.value;
  return h;
}

// Builds the arguments of one run on backend B in type T.
// alias_out / alias_in: run with that output in that input's buffer.
template <class B, class T, class Case>
Io<B, T> make_io(const Case& c, const Values& v, const std::vector<Change>& changes = {}, const std::string& alias_out = "",
                 const std::string& alias_in = "") {
  Io<B, T> io;
  const std::string t = c.title();
  for (const Arg& a : c.args()) {
    io.shapes_[a.name] = a.shape;
    if (a.name == alias_out) {
      io.alias_[a.name] = alias_in;
      continue;
    }
    const HostArray h = changed(v.args.at(a.name), a.name, changes, a.init, stream_of(t, a.name));
    io.shapes_[a.name] = h.shape;
    with_dtype<T>(a.dtype, [&](auto tag) { io.args_.emplace(a.name, upload_array<B, decltype(tag)>(h)); });
  }
  for (const auto& [n, h] : v.douts)
    io.douts_.emplace(n, upload_array<B, T>(changed(h, "dout " + n, changes, uniform(), stream_of(t, "dout " + n))));
  for (const auto& [n, h] : v.grad_init) {
    const Init init = c.arg_named(n).grad == Grad::adds ? uniform() : Init{};
    io.grads_.emplace(n, upload_array<B, T>(changed(h, "grad " + n, changes, init, stream_of(t, "grad " + n))));
  }
  io.dscalars_ = v.dscalars;
  return io;
}

// Puts the starting contents back into the outputs (forward may accumulate into them).
template <class B, class T, class Case>
void reset_outputs(Io<B, T>& io, const Case& c, const Values& v) {
  for (const Arg& a : c.args())
    if (a.role != Role::input && !io.alias_.count(a.name))
      with_dtype<T>(a.dtype, [&](auto tag) { io.args_.at(a.name) = upload_array<B, decltype(tag)>(v.args.at(a.name)); });
}

template <class B, class T, class Case>
Result collect(const Io<B, T>& io, const Case& c, const Values& v, bool with_grads) {
  Result r;
  for (const Arg& a : c.args())
    if (a.role == Role::output || a.role == Role::aux)
      with_dtype<T>(a.dtype, [&](auto tag) {
        using U = decltype(tag);
        r.arrays[a.name] = download_array<B, U>(io.template view<U>(a.name), a.dtype);
      });
  if (with_grads)
    for (const auto& [n, g] : io.grads_) {
      HostArray h = download_array<B, T>(g.cview(), Dtype::compute);
      // report what backward contributed: take out what was there before it added
      if (c.arg_named(n).grad == Grad::adds) {
        const HostArray before = rounded<T>(v.grad_init.at(n));
        for (std::size_t i = 0; i < h.v.size(); ++i) h.v[i] -= before.v[i];
      }
      r.arrays["grad " + n] = std::move(h);
    }
  r.scalars = io.scalars_;
  return r;
}

// Forward (and backward when asked and the case has one) on backend B in T.
template <class B, class T, class Case>
Result run(const Case& c, const Values& v, bool with_backward, const std::string& alias_out = "",
           const std::string& alias_in = "") {
  Io<B, T> io = make_io<B, T>(c, v, {}, alias_out, alias_in);
  c.template run_forward<B, T>(io);
  const bool bw = with_backward && c.has_backward();
  if (bw) c.template run_backward<B, T>(io);
  return collect(io, c, v, bw);
}

// The naive reference on the values rounded to T, its outputs rounded to their storage type.
template <class T, class Case>
Result run_reference(const Case& c, const Values& v) {
  const Values rv = rounded<T>(v);
  Ref ref;
  for (const Arg& a : c.args()) {
    const HostArray& h = rv.args.at(a.name);
    Tensor<cpu, double> t(h.shape);
    std::copy(h.v.begin(), h.v.end(), t.data());
    ref.args_.emplace(a.name, std::move(t));
  }
  c.run_reference(ref);
  Result r;
  for (const Arg& a : c.args())
    if (a.role == Role::output || a.role == Role::aux) {
      const Tensor<cpu, double>& t = ref.args_.at(a.name);
      r.arrays[a.name] = rounded<T>(HostArray{t.shape(), a.dtype, std::vector<double>(t.data(), t.data() + t.numel())});
    }
  r.scalars = ref.scalars_;
  return r;
}

// ---------------------------------------------------------------------------
// Comparison and reporting
// ---------------------------------------------------------------------------

// |got - want| / max(1, |want|); two NaNs, or two equal infinities, agree.
inline double rel_error(double got, double want) {
  if (std::isnan(got) && std::isnan(want)) return 0;
  if (std::isinf(want) && got == want) return 0;
  const double e = std::abs(got - want) / std::max(1.0, std::abs(want));
  return std::isnan(e) ? INFINITY : e;
}

inline std::string coords(const Shape& s, index_t i) {
  std::ostringstream os;
  os << "(";
  std::vector<index_t> idx(static_cast<std::size_t>(std::max(1, s.rank())), 0);
  index_t rest = i;
  for (int d = s.rank() - 1; d >= 0; --d) {
    idx[static_cast<std::size_t>(d)] = s[d] ? rest % s[d] : 0;
    rest = s[d] ? rest / s[d] : 0;
  }
  for (int d = 0; d < s.rank(); ++d) os << (d ? ", " : "") << idx[static_cast<std::size_t>(d)];
  os << ")";
  return os.str();
}

struct Worst {
  double err = 0;
  std::string where = "nothing compared";
  bool missing = false;
};

// The worst element over every array and scalar of `want` (only those whose
// name starts with `prefix`).
inline Worst compare(const Result& got, const Result& want, const std::string& prefix = "") {
  Worst w;
  std::ostringstream os;
  os.precision(9);
  for (const auto& [n, h] : want.arrays) {
    if (n.rfind(prefix, 0) != 0) continue;
    auto it = got.arrays.find(n);
    if (it == got.arrays.end() || it->second.shape != h.shape) {
      w.err = INFINITY, w.missing = true, w.where = n + " missing or of another shape";
      return w;
    }
    if (w.where == "nothing compared") w.where = n + " (all equal)";
    for (std::size_t i = 0; i < h.v.size(); ++i) {
      const double e = rel_error(it->second.v[i], h.v[i]);
      if (e > w.err) {
        os.str("");
        os << n << " element " << i << " " << coords(h.shape, static_cast<index_t>(i)) << ": got " << it->second.v[i] << ", want "
           << h.v[i];
        w.err = e, w.where = os.str();
      }
    }
  }
  if (!prefix.empty()) return w;
  for (const auto& [n, s] : want.scalars) {
    auto it = got.scalars.find(n);
    if (it == got.scalars.end()) {
      w.err = INFINITY, w.missing = true, w.where = "scalar " + n + " missing";
      return w;
    }
    const double e = rel_error(it->second, s);
    if (e > w.err) {
      os.str("");
      os << "scalar " << n << ": got " << it->second << ", want " << s;
      w.err = e, w.where = os.str();
    }
  }
  return w;
}

// Counts the checks of one test case and reports failures through doctest.
struct Tally {
  int entries = 0;
  long checks = 0;
  void check(bool ok, const std::string& message) {
    ++checks;
    CHECK_MESSAGE(ok, message);
  }
};

template <class Case>
std::string describe(const Case& c, const std::string& what) {
  return "op " + c.title() + " " + c.signature() + ", " + what;
}

template <class Case>
void check_close(Tally& t, const Case& c, const std::string& what, const Result& got, const Result& want, double limit,
                 const std::string& prefix = "") {
  const Worst w = compare(got, want, prefix);
  std::ostringstream os;
  os << what << ": worst " << w.where << " (error " << w.err << ", limit " << limit << ")";
  t.check(!w.missing && w.err <= limit, describe(c, os.str()));
}

// Runs f; returns the plm::Error message, or "" with `problem` set.
template <class F>
std::string error_message(F&& f, std::string& problem) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    problem = std::string("a non-plm exception: ") + e.what();
    return "";
  }
  problem = "no error was raised";
  return "";
}

// ---------------------------------------------------------------------------
// The checks, one function each
// ---------------------------------------------------------------------------

// The op in float and double against the naive reference; the float backward
// against the double backward on the same (float-rounded) inputs.
template <class T, class Case>
void check_reference(Tally& t, const Case& c, const Values& v) {
  const Result want = run_reference<T>(c, v);
  const Result got = run<cpu, T>(c, v, true);
  check_close(t, c, std::string(type_name<T>()) + ", cpu against the naive reference", got, want, c.template tolerance<T>());
  if constexpr (std::is_same_v<T, float>)
    if (c.has_backward()) {
      const Result dbl = run<cpu, double>(c, rounded<float>(v), true);
      // a floor of the default tolerance: exact forwards (gather, copy) have sums in their backward
      check_close(t, c, "float backward against the double backward on the same inputs", got, dbl,
                  std::max(c.template tolerance<float>(), 2e-5), "grad ");
    }
}

// Cases whose differentiated inputs hold more elements than this skip the
// element-by-element differences; each op keeps at least one smaller case.
inline constexpr index_t fd_max_elements = 3000;

template <class Case>
index_t fd_elements(const Case& c) {
  index_t n = 0;
  for (const Arg& a : c.args())
    if (a.grad != Grad::none) n += a.shape.numel();
  return n;
}

// Central differences in double of L = sum_k <out_k, dout_k> + sum_s dscalar_s s
// against the backward, for every input with a gradient.
template <class Case>
void check_finite_differences(Tally& t, const Case& c, const Values& v) {
  Io<cpu, double> io = make_io<cpu, double>(c, v);
  c.template run_forward<cpu, double>(io);
  c.template run_backward<cpu, double>(io);
  const Result analytic = collect(io, c, v, true);
  auto loss = [&] {
    reset_outputs(io, c, v);
    io.scalars_.clear();
    c.template run_forward<cpu, double>(io);
    double l = 0;
    for (const auto& [n, r] : io.douts_) l += testing::dot<double>(io.in(n), r.cview());
    for (const auto& [n, w] : io.dscalars_) {
      PLM_CHECK(io.scalars_.count(n), "op table: ", c.title(), " did not set scalar ", n);
      l += w * io.scalars_.at(n);
    }
    return l;
  };
  for (const Arg& a : c.args()) {
    if (a.grad == Grad::none) continue;
    const HostArray& g = analytic.arrays.at("grad " + a.name);
    const testing::GradientCheck r =
        testing::check_gradient(io.as_f64(a.name), ConstView<cpu, double>(g.v.data(), g.shape), loss);
    std::string where = r.report("grad " + a.name);
    if (r.worst_index >= 0) where += " at " + coords(a.shape, r.worst_index);
    t.check(r.ok(), describe(c, "finite differences in double: " + where));
  }
}

// Same results with one and with two threads, bit for bit unless the case allows a difference.
template <class T, class Case>
void check_threads(Tally& t, const Case& c, const Values& v) {
  const int saved = num_threads();
  set_num_threads(1);
  const Result one = run<cpu, T>(c, v, true);
  set_num_threads(2);
  const Result two = run<cpu, T>(c, v, true);
  set_num_threads(saved);
  check_close(t, c, std::string(type_name<T>()) + ", 2 threads against 1 thread", two, one, c.template thread_tolerance<T>());
}

// Each declared alias: the output written into its input's buffer equals the out-of-place result.
template <class B, class T, class Case>
void check_aliases(Tally& t, const Case& c, const Values& v) {
  if (c.aliases().empty()) return;
  const Result apart = run<B, T>(c, v, false);
  for (const auto& [o, i] : c.aliases()) {
    const Result same = run<B, T>(c, v, false, o, i);
    check_close(t, c, std::string(type_name<T>()) + ", " + B::name + ", " + o + " in the buffer of " + i, same, apart, 0.0);
  }
}

// The error each error case must raise on backend B; returns the messages
// (without the source location) so backends can be compared.
template <class B, class T, class Case>
std::vector<std::string> check_errors(Tally& t, const Case& c, const Values& v) {
  std::vector<std::string> messages;
  for (const ErrorCase& e : c.errors()) {
    std::string problem;
    const std::string msg = error_message(
        [&] {
          Io<B, T> io = make_io<B, T>(c, v, e.changes);
          if (!e.in_backward()) return c.template run_forward<B, T>(io);
          std::string fwd_problem;
          const std::string fwd = error_message([&] { c.template run_forward<B, T>(io); }, fwd_problem);
          PLM_CHECK(fwd.empty(), "op table: the forward failed before the backward could: ", fwd);
          c.template run_backward<B, T>(io);
        },
        problem);
    std::string expected;
    bool ok = !msg.empty();
    for (const std::string& p : e.parts) {
      expected += (expected.empty() ? "\"" : ", \"") + p + "\"";
      ok = ok && msg.find(p) != std::string::npos;
    }
    t.check(ok, describe(c, std::string(B::name) + " error case: expected a plm::Error containing " + expected + ", got " +
                                (msg.empty() ? problem : "\"" + msg + "\"")));
    messages.push_back(msg.substr(0, msg.rfind(" [")));
  }
  return messages;
}

// Backend B against the CPU on the same inputs, forward and backward, within
// the case's backend tolerance; aliases and error cases on B as well, with the
// CPU's error messages.
template <class B, class T, class Case>
void check_backend(Tally& t, const Case& c, const Values& v) {
  Tally scratch;
  const std::vector<std::string> cpu_messages = check_errors<cpu, T>(scratch, c, v);
  const std::vector<std::string> messages = check_errors<B, T>(t, c, v);
  for (std::size_t i = 0; i < messages.size() && i < cpu_messages.size(); ++i)
    t.check(messages[i] == cpu_messages[i], describe(c, std::string(B::name) + " error message \"" + messages[i] +
                                                            "\" differs from the cpu's \"" + cpu_messages[i] + "\""));
  if (c.error_only()) return;
  const Result want = run<cpu, T>(c, v, true);
  const Result got = run<B, T>(c, v, true);
  check_close(t, c, std::string(type_name<T>()) + ", " + B::name + " against cpu", got, want, c.template backend_tolerance<T>());
  check_aliases<B, T>(t, c, v);
}

// ---------------------------------------------------------------------------
// Naive references and backward helpers shared by several entries
// ---------------------------------------------------------------------------

namespace ref {

// C_q = alpha op(A_q) op(B_q) + beta C_q over the raw strided layout of gemm_strided_batched.
inline void gemm(bool ta, bool tb, index_t m, index_t n, index_t k, double alpha, const double* a, index_t lda, index_t sa,
                 const double* b, index_t ldb, index_t sb, double beta, double* c, index_t ldc, index_t sc, index_t batch) {
  for (index_t q = 0; q < batch; ++q)
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        long double s = 0;
        for (index_t p = 0; p < k; ++p) {
          const double av = ta ? a[q * sa + p * lda + i] : a[q * sa + i * lda + p];
          const double bv = tb ? b[q * sb + j * ldb + p] : b[q * sb + p * ldb + j];
          s += static_cast<long double>(av) * bv;
        }
        double& cv = c[q * sc + i * ldc + j];
        cv = static_cast<double>(alpha * s + (beta == 0 ? 0.0L : static_cast<long double>(beta) * cv));
      }
}

// c = alpha op(a) op(b) + beta c with matmul's broadcasting: a rank-2 operand serves every batch.
inline void matmul(Ref& r, bool ta, bool tb, double alpha, double beta) {
  const ConstView<cpu, double> a = r.in("a"), b = r.in("b");
  const TensorView<cpu, double> c = r.out("c");
  const index_t m = ta ? a.dim(-1) : a.dim(-2), k = ta ? a.dim(-2) : a.dim(-1), n = tb ? b.dim(-2) : b.dim(-1);
  const index_t sa = a.rank() == 2 ? 0 : a.dim(-2) * a.dim(-1), sb = b.rank() == 2 ? 0 : b.dim(-2) * b.dim(-1);
  gemm(ta, tb, m, n, k, alpha, a.data(), a.dim(-1), sa, b.data(), b.dim(-1), sb, beta, c.data(), n, m * n, c.numel() / (m * n));
}

struct SoftmaxVariant {
  const char* name;
  int bias;  // 0 none, 1 shared (H, Tq, Tk), 2 per batch (B, H, Tq, Tk)
  bool padding, causal;
  double scale;
};

inline void masked_softmax(Ref& r, const SoftmaxVariant& v) {
  const ConstView<cpu, double> s = r.in("scores");
  const TensorView<cpu, double> p = r.out("probs");
  const index_t B = s.dim(0), H = s.dim(1), Tq = s.dim(2), Tk = s.dim(3);
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < Tq; ++i) {
        std::vector<double> l(static_cast<std::size_t>(Tk));
        std::vector<bool> visible(static_cast<std::size_t>(Tk));
        double mx = -INFINITY;
        for (index_t j = 0; j < Tk; ++j) {
          const auto u = static_cast<std::size_t>(j);
          visible[u] = (!v.padding || r.in("key_valid").at(b, j) != 0) && (!v.causal || j <= i + Tk - Tq);
          const double bias = v.bias == 1 ? r.in("bias").at(h, i, j) : v.bias == 2 ? r.in("bias").at(b, h, i, j) : 0.0;
          l[u] = v.scale * s.at(b, h, i, j) + bias;
          if (visible[u]) mx = std::max(mx, l[u]);
        }
        double z = 0;
        for (index_t j = 0; j < Tk; ++j)
          z += visible[static_cast<std::size_t>(j)] ? std::exp(l[static_cast<std::size_t>(j)] - mx) : 0;
        for (index_t j = 0; j < Tk; ++j)  // a row with no visible key is all zeros
          p.at(b, h, i, j) = visible[static_cast<std::size_t>(j)] ? std::exp(l[static_cast<std::size_t>(j)] - mx) / z : 0;
      }
}

inline void copy(ConstView<cpu, double> x, TensorView<cpu, double> y) { std::copy(x.data(), x.data() + x.numel(), y.data()); }

inline double gelu(double v) { return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
inline double gelu_erf(double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }
inline double silu(double v) { return v / (1 + std::exp(-v)); }
inline double relu(double v) { return v > 0 ? v : 0; }

// Per row: loss = (1 - s) (-log p_t) + s mean_j(-log p_j); gradient g (p - s/V - (1 - s) onehot(t)).
inline void cross_entropy(Ref& r, double smoothing, double grad_scale, bool per_row, bool with_grad) {
  const ConstView<cpu, double> logits = r.in("logits");
  const index_t V = logits.dim(-1), rows = logits.shape().rows();
  double loss = 0, nll = 0, count = 0, correct = 0;
  for (index_t q = 0; q < rows; ++q) {
    const double* l = logits.data() + q * V;
    const index_t t = r.id("targets", q);
    double row_loss = 0, hit = 0;
    std::vector<double> g(static_cast<std::size_t>(V), 0.0);
    if (t != -100) {
      index_t arg = 0;
      for (index_t j = 1; j < V; ++j)
        if (l[j] > l[arg]) arg = j;
      double z = 0, sum = 0;
      for (index_t j = 0; j < V; ++j) z += std::exp(l[j] - l[arg]), sum += l[j];
      const double lse = l[arg] + std::log(z);
      row_loss = (1 - smoothing) * (lse - l[t]) + smoothing * (lse - sum / static_cast<double>(V));
      hit = arg == t;
      loss += row_loss, nll += lse - l[t], count += 1, correct += hit;
      for (index_t j = 0; j < V; ++j)
        g[static_cast<std::size_t>(j)] =
            grad_scale * (std::exp(l[j] - lse) - smoothing / static_cast<double>(V) - (j == t ? 1 - smoothing : 0));
    }
    if (per_row) r.out("row_loss").data()[q] = row_loss, r.out("row_correct").data()[q] = hit;
    if (with_grad) std::copy(g.begin(), g.end(), r.out("dlogits").data() + q * V);
  }
  r.set_scalar("loss", loss), r.set_scalar("nll", nll), r.set_scalar("count", count), r.set_scalar("correct", correct);
}

struct Adafactor {
  double lr, beta2t, eps1, clip, beta1, weight_decay;
  bool factored, momentum;
  int steps;
};

// Adafactor as transformers.Adafactor, in double.
inline void adafactor(Ref& r, const Adafactor& o) {
  const TensorView<cpu, double> p = r.out("param"), row = r.out("row");
  const ConstView<cpu, double> g = r.in("grad");
  const index_t n = p.numel(), R = o.factored ? p.dim(0) : 1, C = n / R;
  for (int step = 0; step < o.steps; ++step) {
    std::vector<double> u(static_cast<std::size_t>(n));
    if (o.factored) {
      const TensorView<cpu, double> col = r.out("col");
      for (index_t i = 0; i < R; ++i) {
        double s = 0;
        for (index_t j = 0; j < C; ++j) s += g.at(i, j) * g.at(i, j) + o.eps1;
        row.data()[i] = o.beta2t * row.data()[i] + (1 - o.beta2t) * s / static_cast<double>(C);
      }
      for (index_t j = 0; j < C; ++j) {
        double s = 0;
        for (index_t i = 0; i < R; ++i) s += g.at(i, j) * g.at(i, j) + o.eps1;
        col.data()[j] = o.beta2t * col.data()[j] + (1 - o.beta2t) * s / static_cast<double>(R);
      }
      double mean = 0;
      for (index_t i = 0; i < R; ++i) mean += row.data()[i] / static_cast<double>(R);
      for (index_t i = 0; i < R; ++i)
        for (index_t j = 0; j < C; ++j)
          u[static_cast<std::size_t>(i * C + j)] = g.at(i, j) / std::sqrt(row.data()[i] / mean * col.data()[j]);
    } else {
      for (index_t i = 0; i < n; ++i) {
        row.data()[i] = o.beta2t * row.data()[i] + (1 - o.beta2t) * (g.data()[i] * g.data()[i] + o.eps1);
        u[static_cast<std::size_t>(i)] = g.data()[i] / std::sqrt(row.data()[i]);
      }
    }
    double ss = 0;
    for (double x : u) ss += x * x;
    const double scale = o.lr / std::max(1.0, std::sqrt(ss / static_cast<double>(n)) / o.clip);
    for (index_t i = 0; i < n; ++i) {
      double step_i = scale * u[static_cast<std::size_t>(i)];
      if (o.momentum) step_i = r.out("mom").data()[i] = o.beta1 * r.out("mom").data()[i] + (1 - o.beta1) * step_i;
      p.data()[i] = p.data()[i] * (1 - o.lr * o.weight_decay) - step_i;
    }
  }
}

}  // namespace ref

// matmul's backward, as a layer computes it: the gradient of sum(c * dout) with
// respect to a and b, with a rank-2 operand's gradient summed over the batch.
template <class IoT, class O>
void matmul_backward(IoT& io, O ops, bool ta, bool tb, double alpha) {
  using T = typename IoT::value_type;
  const auto a = io.in("a"), b = io.in("b"), r = io.dout("c");
  const auto da = io.grad("a"), db = io.grad("b");
  const index_t batch = r.numel() / (r.dim(-2) * r.dim(-1));
  auto slice = [&](auto v, index_t q) { return v.rank() == 2 ? v : v.reshape(Shape{batch, v.dim(-2), v.dim(-1)})[q]; };
  // dA = alpha R op(b)^T (stored transposed when ta); dB = alpha op(a)^T R (likewise)
  auto grad_a = [&](auto rq, auto bq, auto dst, double beta) {
    if (!ta)
      ops.matmul(rq, false, bq, !tb, dst, T(alpha), T(beta));
    else
      ops.matmul(bq, tb, rq, true, dst, T(alpha), T(beta));
  };
  auto grad_b = [&](auto rq, auto aq, auto dst, double beta) {
    if (!tb)
      ops.matmul(aq, !ta, rq, false, dst, T(alpha), T(beta));
    else
      ops.matmul(rq, true, aq, ta, dst, T(alpha), T(beta));
  };
  if (a.rank() == 2 && r.rank() > 2)
    for (index_t q = 0; q < batch; ++q) grad_a(slice(r, q), slice(b, q), da, q ? 1.0 : 0.0);
  else
    grad_a(r, b, da, 0.0);
  if (b.rank() == 2 && r.rank() > 2)
    for (index_t q = 0; q < batch; ++q) grad_b(slice(r, q), slice(a, q), db, q ? 1.0 : 0.0);
  else
    grad_b(r, a, db, 0.0);
}

// convert between two storage types chosen at run time; the same type on
// both sides is not an op any backend provides.
template <class O, class S, class D>
void convert_if_distinct(O ops, S src, D dst) {
  if constexpr (std::is_same_v<typename S::value_type, typename D::value_type>)
    PLM_FAIL("op table: convert to the same type");
  else
    ops.convert(src, dst);
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

template <class... Bs>
std::vector<OpCase<Bs...>> op_table() {
  using detail::concat;
  using Case = OpCase<Bs...>;
  std::vector<Case> table;
  auto add = [&](std::string op, std::string variant) -> Case& { return table.emplace_back(std::move(op), std::move(variant)); };

  // ---- gemm_strided_batched: raw strided buffers ----------------------------
  const index_t gemm_sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 48, 96}, {130, 3, 9}, {5, 129, 1}};
  for (auto& sz : gemm_sizes)
    for (int flags = 0; flags < 4; ++flags) {
      const bool ta = flags & 1, tb = flags & 2;
      const index_t m = sz[0], n = sz[1], k = sz[2], batch = 3;
      // padded rows (lda, ldb, ldc), padding between output matrices, B broadcast with stride 0
      const index_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      const index_t sa = (ta ? k : m) * lda, sb = 0, sc = m * ldc + 5;
      const double alpha = 0.75, beta = flags == 3 ? 0.0 : -0.5;
      add("gemm_strided_batched", concat("m=", m, " n=", n, " k=", k, ta ? " A^T" : "", tb ? " B^T" : "",
                                         ", padded leading dimensions, B broadcast (stride 0), beta ", beta))
          .in("a", Shape{batch * sa})
          .in("b", Shape{(tb ? n : k) * ldb})
          .out("c", Shape{batch * sc}, uniform())  // beta != 0 reads it; the padding must stay untouched
          .tolerance(2e-5 * double(k + 1), 1e-12 * double(k + 1))
          .backend_tolerance(1e-5 * double(k + 1) / 3, 1e-10)
          .forward([=](auto& io, auto O) {
            O.gemm_strided_batched(ta, tb, m, n, k, io.t(alpha), io.in("a").data(), lda, sa, io.in("b").data(), ldb, sb,
                                   io.t(beta), io.out("c").data(), ldc, sc, batch);
          })
          .reference([=](Ref& r) {
            ref::gemm(ta, tb, m, n, k, alpha, r.in("a").data(), lda, sa, r.in("b").data(), ldb, sb, beta, r.out("c").data(), ldc,
                      sc, batch);
          });
    }
  add("gemm_strided_batched", "lda smaller than k")
      .in("a", Shape{16})
      .in("b", Shape{16})
      .out("c", Shape{16})
      .forward([](auto& io, auto O) {
        O.gemm_strided_batched(false, false, 4, 4, 4, io.t(1), io.in("a").data(), 2, 0, io.in("b").data(), 4, 0, io.t(0),
                               io.out("c").data(), 4, 0, 1);
      })
      .error({}, {"gemm: leading dimensions lda=2"});

  // ---- matmul: shape-checked products, batching and broadcasts ---------------
  auto add_matmul = [&](std::string variant, Shape as, bool ta, Shape bs, bool tb, Shape cs, double alpha, double beta) -> Case& {
    const index_t k = ta ? as[-2] : as[-1];
    return add("matmul", concat(variant, ta ? ", a^T" : "", tb ? ", b^T" : "", alpha != 1 ? concat(", alpha ", alpha) : "",
                                beta != 0 ? concat(", beta ", beta) : ""))
        .in("a", as)
        .grad("a")
        .in("b", bs)
        .grad("b")
        .out("c", cs, beta != 0 ? uniform() : Init{})
        .tolerance(2e-5 * double(k + 1), 1e-12 * double(k + 1))
        .backend_tolerance(1e-5 * double(k + 1) / 3, 1e-10)
        .forward([=](auto& io, auto O) { O.matmul(io.in("a"), ta, io.in("b"), tb, io.out("c"), io.t(alpha), io.t(beta)); })
        .backward([=](auto& io, auto O) { matmul_backward(io, O, ta, tb, alpha); })
        .reference([=](Ref& r) { ref::matmul(r, ta, tb, alpha, beta); });
  };
  add_matmul("plain (M, K) x (K, N)", Shape{2, 3}, false, Shape{3, 5}, false, Shape{2, 5}, 1, 0)
      .error({reshape("b", Shape{4, 5})}, {"matmul: inner dimensions differ", "(2, 3)", "(4, 5)"})
      .error({reshape("c", Shape{2, 4})}, {"matmul: output shape", "(2, 4)"})
      .error({reshape("a", Shape{3})}, {"matmul: operands need rank >= 2", "(3,)"});
  add_matmul("Linear: (B, T, C) x W^T, all rows in one GEMM", Shape{3, 7, 10}, false, Shape{6, 10}, true, Shape{3, 7, 6}, 1, 0);
  add_matmul("attention scores: (B, H, Tq, D) x (B, H, Tk, D)^T", Shape{2, 3, 5, 4}, false, Shape{2, 3, 9, 4}, true,
             Shape{2, 3, 5, 9}, 0.5, 0);
  add_matmul("weight gradient dy^T x accumulated", Shape{21, 6}, true, Shape{21, 10}, false, Shape{6, 10}, 1, 1);
  add_matmul("rank-2 a broadcast against a batched b", Shape{4, 5}, false, Shape{3, 5, 2}, false, Shape{3, 4, 2}, 1, 0);
  for (int flags = 0; flags < 4; ++flags) {
    const bool ta = flags & 1, tb = flags & 2;
    const index_t Bn = 3, M = 17, K = 33, N = 9;
    auto& batched = add_matmul("batched", ta ? Shape{Bn, K, M} : Shape{Bn, M, K}, ta, tb ? Shape{Bn, N, K} : Shape{Bn, K, N}, tb,
                               Shape{Bn, M, N}, 0.5, 2);
    if (flags == 0) batched.error({reshape("b", Shape{4, K, N})}, {"matmul: batch dimensions of b and c differ", "(4, 33, 9)"});
    add_matmul("rank-2 b broadcast over the batch", ta ? Shape{2, 6, 5} : Shape{2, 5, 6}, ta, tb ? Shape{4, 6} : Shape{6, 4}, tb,
               Shape{2, 5, 4}, 1, 0);
    add_matmul("rank-2 a broadcast over the batch", ta ? Shape{6, 5} : Shape{5, 6}, ta, tb ? Shape{2, 4, 6} : Shape{2, 6, 4}, tb,
               Shape{2, 5, 4}, 1, 0);
  }

  // ---- elementwise -----------------------------------------------------------
  const Shape es{3, 5, 7};
  add("add", "a + b")
      .in("a", es)
      .grad("a")
      .in("b", es)
      .grad("b")
      .out("out", es)
      .alias("out", "a")
      .alias("out", "b")
      .forward([](auto& io, auto O) { O.add(io.in("a"), io.in("b"), io.out("out")); })
      .backward([](auto& io, auto O) { O.copy(io.dout("out"), io.grad("a")), O.copy(io.dout("out"), io.grad("b")); })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("a").numel(); ++i) r.out("out").data()[i] = r.in("a").data()[i] + r.in("b").data()[i];
      })
      .error({reshape("b", Shape{7, 5, 3})}, {"add: a (3, 5, 7) and b (7, 5, 3) must have the same shape"});
  add("sub", "a - b")
      .in("a", es)
      .grad("a")
      .in("b", es)
      .grad("b")
      .out("out", es)
      .alias("out", "a")
      .forward([](auto& io, auto O) { O.sub(io.in("a"), io.in("b"), io.out("out")); })
      .backward([](auto& io, auto O) { O.copy(io.dout("out"), io.grad("a")), O.scale(io.dout("out"), io.t(-1), io.grad("b")); })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("a").numel(); ++i) r.out("out").data()[i] = r.in("a").data()[i] - r.in("b").data()[i];
      });
  add("mul", "a * b")
      .in("a", es)
      .grad("a")
      .in("b", es)
      .grad("b")
      .out("out", es)
      .alias("out", "b")
      .forward([](auto& io, auto O) { O.mul(io.in("a"), io.in("b"), io.out("out")); })
      .backward([](auto& io, auto O) {
        O.mul(io.dout("out"), io.in("b"), io.grad("a")), O.mul(io.dout("out"), io.in("a"), io.grad("b"));
      })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("a").numel(); ++i) r.out("out").data()[i] = r.in("a").data()[i] * r.in("b").data()[i];
      })
      .error({reshape("out", Shape{7, 5, 3})}, {"mul: a (3, 5, 7) and out (7, 5, 3)"});
  add("scale", "alpha -3")
      .in("x", es)
      .grad("x")
      .out("out", es)
      .alias("out", "x")
      .forward([](auto& io, auto O) { O.scale(io.in("x"), io.t(-3), io.out("out")); })
      .backward([](auto& io, auto O) { O.scale(io.dout("out"), io.t(-3), io.grad("x")); })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("x").numel(); ++i) r.out("out").data()[i] = -3 * r.in("x").data()[i];
      })
      .error({reshape("out", Shape{7, 5, 3})}, {"scale: x (3, 5, 7) and out (7, 5, 3)"});
  add("axpy", "y += 2 x")
      .in("x", es)
      .grad("x")
      .out("y", es, uniform())
      .forward([](auto& io, auto O) { O.axpy(io.t(2), io.in("x"), io.out("y")); })
      .backward([](auto& io, auto O) { O.scale(io.dout("y"), io.t(2), io.grad("x")); })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("x").numel(); ++i) r.out("y").data()[i] += 2 * r.in("x").data()[i];
      })
      .error({reshape("y", Shape{7, 5, 3})}, {"axpy:", "(3, 5, 7)", "(7, 5, 3)"});
  add("add_row", "x (..., C) + row (C)")
      .in("x", es)
      .grad("x")
      .in("row", Shape{7})
      .grad("row")
      .out("out", es)
      .alias("out", "x")
      .forward([](auto& io, auto O) { O.add_row(io.in("x"), io.in("row"), io.out("out")); })
      .backward([](auto& io, auto O) { O.copy(io.dout("out"), io.grad("x")), O.sum_rows(io.dout("out"), io.grad("row")); })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("x").numel(); ++i) r.out("out").data()[i] = r.in("x").data()[i] + r.in("row").data()[i % 7];
      })
      .error({reshape("row", Shape{5})}, {"add_row: row has shape (5,), expected (7,)"});
  add("mul_row", "x (..., C) * row (C)")
      .in("x", es)
      .grad("x")
      .in("row", Shape{7})
      .grad("row")
      .out("out", es)
      .scratch("dout_x", es)
      .alias("out", "x")
      .forward([](auto& io, auto O) { O.mul_row(io.in("x"), io.in("row"), io.out("out")); })
      .backward([](auto& io, auto O) {
        O.mul_row(io.dout("out"), io.in("row"), io.grad("x"));
        O.mul(io.dout("out"), io.in("x"), io.out("dout_x"));
        O.sum_rows(io.out("dout_x"), io.grad("row"));
      })
      .reference([](Ref& r) {
        for (index_t i = 0; i < r.in("x").numel(); ++i) r.out("out").data()[i] = r.in("x").data()[i] * r.in("row").data()[i % 7];
      });
  auto add_sum_rows = [&](Shape s, double beta) -> Case& {
    const index_t C = s[-1];
    return add("sum_rows", concat("column sums", beta != 0 ? concat(" added to ", beta, " * out") : ""))
        .in("x", s)
        .grad("x")
        .out("out", Shape{C}, beta != 0 ? uniform() : Init{})
        .forward([=](auto& io, auto O) { O.sum_rows(io.in("x"), io.out("out"), io.t(beta)); })
        .backward([](auto& io, auto O) {
          O.fill(io.grad("x"), io.t(0));
          O.add_row(io.grad("x"), io.dout("out"), io.grad("x"));
        })
        .reference([=](Ref& r) {
          const index_t rows = r.in("x").numel() / C;
          for (index_t c = 0; c < C; ++c) {
            double s2 = beta != 0 ? beta * r.out("out").data()[c] : 0.0;
            for (index_t q = 0; q < rows; ++q) s2 += r.in("x").data()[q * C + c];
            r.out("out").data()[c] = s2;
          }
        });
  };
  add_sum_rows(es, 2)
      .tolerance(2e-5 * 16, 1e-12 * 16)
      .error({reshape("out", Shape{5})}, {"sum_rows: out has shape (5,), expected (7,)"});
  add_sum_rows(Shape{301, 257}, 0).tolerance(2e-5 * 302, 1e-12 * 302).backend_tolerance(1e-5 * 30, 1e-10);  // threaded
  add("transpose12", "(A, B, C, D) -> (A, C, B, D)")
      .in("x", Shape{2, 3, 5, 4})
      .grad("x")
      .out("out", Shape{2, 5, 3, 4})
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.transpose12(io.in("x"), io.out("out")); })
      .backward([](auto& io, auto O) { O.transpose12(io.dout("out"), io.grad("x")); })
      .reference([](Ref& r) {
        for (index_t a = 0; a < 2; ++a)
          for (index_t b = 0; b < 3; ++b)
            for (index_t c = 0; c < 5; ++c)
              for (index_t d = 0; d < 4; ++d) r.out("out").at(a, c, b, d) = r.in("x").at(a, b, c, d);
      })
      .error({reshape("out", Shape{2, 3, 5, 4})}, {"transpose12: out (2, 3, 5, 4) should be (2, 5, 3, 4)"});
  add("scale_rows", "x (..., C) * factor (rows)")
      .in("x", es)
      .grad("x")
      .in("factor", Shape{es.rows()}, with(uniform(), {{2, 0.0}}))
      .out("out", es)
      .alias("out", "x")
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.scale_rows(io.in("x"), io.in("factor"), io.out("out")); })
      .backward([](auto& io, auto O) { O.scale_rows(io.dout("out"), io.in("factor"), io.grad("x")); })
      .reference([=](Ref& r) {
        const index_t C = es[-1];
        for (index_t i = 0; i < r.in("x").numel(); ++i) r.out("out").data()[i] = r.in("x").data()[i] * r.in("factor").data()[i / C];
      })
      .error({reshape("factor", Shape{es.rows() + 1})}, {"scale_rows: factor has shape"});
  add("rotary", "(B, H, T, D) pairs (i, i + D/2) turned by position")
      .in("x", Shape{2, 3, 5, 8})
      .grad("x")
      .in("cos", Shape{5, 4})
      .in("sin", Shape{5, 4})
      .out("y", Shape{2, 3, 5, 8})
      .alias("y", "x")
      .forward([](auto& io, auto O) { O.rotary(io.in("x"), io.in("cos"), io.in("sin"), io.out("y")); })
      .backward([](auto& io, auto O) { O.rotary(io.dout("y"), io.in("cos"), io.in("sin"), io.grad("x"), true); })
      .reference([](Ref& r) {
        for (index_t q = 0; q < 2 * 3 * 5; ++q)
          for (index_t i = 0; i < 4; ++i) {
            const index_t t = q % 5;
            const double x1 = r.in("x").data()[q * 8 + i], x2 = r.in("x").data()[q * 8 + i + 4];
            const double c = r.in("cos").at(t, i), sn = r.in("sin").at(t, i);
            r.out("y").data()[q * 8 + i] = x1 * c - x2 * sn;
            r.out("y").data()[q * 8 + i + 4] = x2 * c + x1 * sn;
          }
      })
      .error({reshape("cos", Shape{4, 4})}, {"rotary: cos (4, 4) must be (5, 4) for x (2, 3, 5, 8)"})
      .error({reshape("y", Shape{2, 3, 5, 7})}, {"rotary:", "(2, 3, 5, 7)"});
  add("copy", "compute type")
      .in("x", es)
      .grad("x")
      .out("out", es)
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.copy(io.in("x"), io.out("out")); })
      .backward([](auto& io, auto O) { O.copy(io.dout("out"), io.grad("x")); })
      .reference([](Ref& r) { ref::copy(r.in("x"), r.out("out")); })
      .error({reshape("out", Shape{7, 5, 3})}, {"copy: src (3, 5, 7) and dst (7, 5, 3)"});
  add("copy", "int32")
      .ids("x", es, below(1000))
      .aux("out", es, Dtype::i32)
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.copy(io.ids("x"), io.as_i32("out")); })
      .reference([](Ref& r) { ref::copy(r.in("x"), r.out("out")); });
  add("fill", "compute type, 1.5")
      .aux("out", es)
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.fill(io.out("out"), io.t(1.5)); })
      .reference([](Ref& r) { std::fill(r.out("out").data(), r.out("out").data() + r.out("out").numel(), 1.5); });
  add("fill", "bf16, -2.75")
      .aux("out", es, Dtype::bf16)
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.fill(io.as_bf16("out"), bf16(-2.75f)); })
      .reference([](Ref& r) { std::fill(r.out("out").data(), r.out("out").data() + r.out("out").numel(), -2.75); });
  add("fill", "int32, -7")
      .aux("out", es, Dtype::i32)
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.fill(io.as_i32("out"), std::int32_t(-7)); })
      .reference([](Ref& r) { std::fill(r.out("out").data(), r.out("out").data() + r.out("out").numel(), -7); });
  add("fill", "uint8, 3")
      .aux("out", es, Dtype::u8)
      .tolerance(0, 0)
      .exact()
      .forward([](auto& io, auto O) { O.fill(io.as_u8("out"), std::uint8_t(3)); })
      .reference([](Ref& r) { std::fill(r.out("out").data(), r.out("out").data() + r.out("out").numel(), 3); });

  // ---- convert: bf16 rounds to nearest even, NaN stays NaN --------------------
  // NaN, +-inf, and a float exactly halfway between two bf16 values (rounds to even)
  const Init specials = with(uniform(-300, 300), {{0, NAN}, {1, INFINITY}, {2, 1.00390625}, {3, -INFINITY}, {4, -0.0}});
  struct ConvertCase {
    const char* name;
    Dtype from, to;
  };
  for (const ConvertCase& cc :
       {ConvertCase{"float -> bf16", Dtype::f32, Dtype::bf16}, ConvertCase{"bf16 -> float", Dtype::bf16, Dtype::f32},
        ConvertCase{"double -> bf16", Dtype::f64, Dtype::bf16}, ConvertCase{"bf16 -> double", Dtype::bf16, Dtype::f64},
        ConvertCase{"float -> double", Dtype::f32, Dtype::f64}, ConvertCase{"double -> float", Dtype::f64, Dtype::f32}}) {
    const Dtype from = cc.from, to = cc.to;
    auto& e =
        add("convert", cc.name)
            .in("src", Shape{1000}, from, specials)
            .aux("dst", Shape{1000}, to)
            .tolerance(0, 0)
            .exact()
            .forward([=](auto& io, auto O) {
              // the storage types are fixed per case; dispatch on them here
              auto src = [&](auto fn) {
                from == Dtype::f32 ? fn(io.as_f32("src")) : from == Dtype::f64 ? fn(io.as_f64("src")) : fn(io.as_bf16("src"));
              };
              src([&](auto s) {
                if (to == Dtype::f32)
                  convert_if_distinct(O, s, io.as_f32("dst"));
                else if (to == Dtype::f64)
                  convert_if_distinct(O, s, io.as_f64("dst"));
                else
                  convert_if_distinct(O, s, io.as_bf16("dst"));
              });
            })
            .reference([](Ref& r) { ref::copy(r.in("src"), r.out("dst")); });  // the harness rounds to dst's type
    if (from == Dtype::f32 && to == Dtype::bf16) e.error({reshape("dst", Shape{999})}, {"convert: src (1000,) and dst (999,)"});
  }

  // ---- masked_softmax over (B, H, Tq, Tk) ------------------------------------
  const ref::SoftmaxVariant softmax_variants[] = {
      {"no mask", 0, false, false, 1},
      {"shared bias", 1, false, false, 1},
      {"per-batch bias", 2, false, false, 1},
      {"key padding", 0, true, false, 1},
      {"shared bias, key padding", 1, true, false, 1},
      {"key padding, causal", 0, true, true, 1},
      {"shared bias, key padding, causal", 1, true, true, 1},
      {"per-batch bias, key padding, causal", 2, true, true, 1},
      {"per-batch bias, key padding, scale 0.7", 2, true, false, 0.7},
      {"shared bias, key padding, causal, scale 0.125", 1, true, true, 0.125},
  };
  auto add_softmax = [&](Shape s, const ref::SoftmaxVariant& v, Init valid, const std::string& note) -> Case& {
    const index_t B = s[0], H = s[1], Tq = s[2], Tk = s[3];
    auto& e = add("masked_softmax", std::string(v.name) + note).in("scores", s, uniform(-3, 3)).grad("scores");
    if (v.bias) e.in("bias", v.bias == 1 ? Shape{H, Tq, Tk} : s).grad_adds("bias");
    if (v.padding) e.mask("key_valid", Shape{B, Tk}, valid);
    return e.out("probs", s)
        .alias("probs", "scores")
        .forward([=](auto& io, auto O) {
          auto m = io.softmax_mask();
          if (v.bias) m.bias = io.in("bias");
          if (v.padding) m.key_valid = io.mask("key_valid");
          m.causal = v.causal;
          m.scale = io.t(v.scale);
          O.masked_softmax(io.in("scores"), io.out("probs"), m);
        })
        .backward([=](auto& io, auto O) {
          O.masked_softmax_backward(io.out("probs"), io.dout("probs"), io.grad("scores"), io.t(v.scale),
                                    v.bias ? io.grad("bias") : io.none());
        })
        .reference([=](Ref& r) { ref::masked_softmax(r, v); });
  };
  for (Shape s : {Shape{3, 2, 5, 5}, Shape{3, 2, 1, 7}, Shape{3, 2, 3, 8}, Shape{3, 2, 17, 33}, Shape{2, 3, 5, 7}}) {
    const index_t Tk = s[3];
    // batch b: its last b keys are padding; batch 0: its first key
    const Init valid =
        each([Tk](const std::vector<index_t>& i) { return (i[1] < Tk - i[0] && !(i[0] == 0 && i[1] == 0)) ? 1.0 : 0.0; });
    for (const auto& v : softmax_variants) {
      auto& e = add_softmax(s, v, valid, "");
      if (s == Shape{2, 3, 5, 7}) {
        if (v.bias == 0 && !v.padding)
          e.error({reshape("scores", Shape{30, 7}), reshape("probs", Shape{30, 7})},
                  {"masked_softmax: scores (30, 7) need rank 4"});
        if (v.bias == 1 && !v.padding)
          e.error({reshape("bias", Shape{3, 7, 5})}, {"masked_softmax: bias (3, 7, 5) must be (H, Tq, Tk) = (3, 5, 7)"})
              .error({reshape("grad bias", Shape{3, 5, 5})}, {"masked_softmax_backward: dbias (3, 5, 5)"});
        if (v.bias == 0 && v.padding && !v.causal)
          e.error({reshape("key_valid", Shape{2, 5})}, {"masked_softmax: key_valid (2, 5) must be (B, Tk) = (2, 7)"});
      }
    }
  }
  // rows with no visible key come out as zeros, not NaN: every key of batch 1
  // padded, and causal with more queries than keys (the first queries see nothing)
  add_softmax(Shape{2, 2, 2, 3}, {"shared bias, key padding", 1, true, false, 1},
              each([](const std::vector<index_t>& i) { return i[0] == 1 ? 0.0 : 1.0; }), ", every key of batch 1 padded");
  add_softmax(Shape{2, 2, 6, 3}, {"key padding, causal", 0, true, true, 1},
              each([](const std::vector<index_t>& i) { return i[0] == 1 && i[1] == 2 ? 0.0 : 1.0; }), ", Tq > Tk");

  // ---- norms over the last dimension -------------------------------------------
  for (Shape s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 33}, Shape{4, 130}, Shape{2, 3, 40}}) {
    const index_t C = s[-1], rows = s.rows();
    auto& rms =
        add("rms_norm", "eps 1e-6")
            .in("x", s, uniform(-2, 3))
            .grad("x")
            .in("w", Shape{C})
            .grad_adds("w")
            .out("y", s)
            .aux("inv_rms", Shape{rows})
            .tolerance(8e-5, 4e-12)
            .forward([](auto& io, auto O) { O.rms_norm(io.in("x"), io.in("w"), io.t(1e-6), io.out("y"), io.out("inv_rms")); })
            .backward([](auto& io, auto O) {
              O.rms_norm_backward(io.in("x"), io.in("w"), io.out("inv_rms"), io.dout("y"), io.grad("x"), io.grad("w"));
            })
            .reference([=](Ref& r) {
              for (index_t q = 0; q < rows; ++q) {
                const double* x = r.in("x").data() + q * C;
                double ms = 0;
                for (index_t c = 0; c < C; ++c) ms += x[c] * x[c];
                const double inv = 1 / std::sqrt(ms / double(C) + 1e-6);
                r.out("inv_rms").data()[q] = inv;
                for (index_t c = 0; c < C; ++c) r.out("y").data()[q * C + c] = x[c] * inv * r.in("w").data()[c];
              }
            });
    if (s == Shape{3, 7})
      rms.error({reshape("w", Shape{5})}, {"rms_norm: weight has shape (5,), expected (7,)"})
          .error({reshape("inv_rms", Shape{2})}, {"rms_norm: inv_rms has shape (2,), expected (3,)"})
          .error({reshape("grad w", Shape{8})}, {"rms_norm_backward: dweight has shape (8,), expected (7,)"})
          .error({reshape("grad x", Shape{3, 6})}, {"rms_norm_backward: x (3, 7) and dx (3, 6)"});
    auto& ln = add("layer_norm", "eps 1e-5")
                   .in("x", s, uniform(-2, 3))
                   .grad("x")
                   .in("w", Shape{C})
                   .grad_adds("w")
                   .in("b", Shape{C})
                   .grad_adds("b")
                   .out("y", s)
                   .aux("mean", Shape{rows})
                   .aux("rstd", Shape{rows})
                   .tolerance(1.6e-4, 8e-12)
                   .forward([](auto& io, auto O) {
                     O.layer_norm(io.in("x"), io.in("w"), io.in("b"), io.t(1e-5), io.out("y"), io.out("mean"), io.out("rstd"));
                   })
                   .backward([](auto& io, auto O) {
                     O.layer_norm_backward(io.in("x"), io.in("w"), io.out("mean"), io.out("rstd"), io.dout("y"), io.grad("x"),
                                           io.grad("w"), io.grad("b"));
                   })
                   .reference([=](Ref& r) {
                     for (index_t q = 0; q < rows; ++q) {
                       const double* x = r.in("x").data() + q * C;
                       double mu = 0, var = 0;
                       for (index_t c = 0; c < C; ++c) mu += x[c] / double(C);
                       for (index_t c = 0; c < C; ++c) var += (x[c] - mu) * (x[c] - mu) / double(C);
                       const double rs = 1 / std::sqrt(var + 1e-5);
                       r.out("mean").data()[q] = mu, r.out("rstd").data()[q] = rs;
                       for (index_t c = 0; c < C; ++c)
                         r.out("y").data()[q * C + c] = (x[c] - mu) * rs * r.in("w").data()[c] + r.in("b").data()[c];
                     }
                   });
    if (s == Shape{3, 7})
      ln.error({reshape("b", Shape{5})}, {"layer_norm: bias has shape (5,), expected (7,)"})
          .error({reshape("grad b", Shape{8})}, {"layer_norm_backward: dbias has shape (8,), expected (7,)"});
  }

  // ---- activations ---------------------------------------------------------------
  struct Activation {
    const char* name;
    double (*f)(double);
  };
  for (const Activation& act :
       {Activation{"gelu", ref::gelu}, Activation{"gelu_erf", ref::gelu_erf}, Activation{"silu", ref::silu}, Activation{"relu", ref::relu}}) {
    const std::string name = act.name;
    auto f = act.f;
    const bool relu = name == "relu";
    for (int small = 0; small < 2; ++small) {
      const Shape s = small ? Shape{4, 9} : Shape{3, 4099};
      // the large case crosses the CPU's 4096-element pieces and holds an exact 0;
      // the small one keeps relu's input off its kink for central differences
      const Init init = small ? away_from_zero(uniform(-4, 4), 1e-3) : with(uniform(-6, 6), {{0, 0.0}});
      auto& e = add(name, small ? "small, for finite differences" : "crosses the 4096-element pieces, x = 0 included")
                    .in("x", s, init)
                    .grad("x")
                    .out("y", s)
                    .alias("y", "x")
                    .forward([name](auto& io, auto O) {
                      if (name == "gelu")
                        O.gelu(io.in("x"), io.out("y"));
                      else if (name == "gelu_erf")
                        O.gelu_erf(io.in("x"), io.out("y"));
                      else if (name == "silu")
                        O.silu(io.in("x"), io.out("y"));
                      else
                        O.relu(io.in("x"), io.out("y"));
                    })
                    .backward([name](auto& io, auto O) {
                      if (name == "gelu")
                        O.gelu_backward(io.in("x"), io.dout("y"), io.grad("x"));
                      else if (name == "gelu_erf")
                        O.gelu_erf_backward(io.in("x"), io.dout("y"), io.grad("x"));
                      else if (name == "silu")
                        O.silu_backward(io.in("x"), io.dout("y"), io.grad("x"));
                      else
                        O.relu_backward(io.in("x"), io.dout("y"), io.grad("x"));
                    })
                    .reference([f](Ref& r) {
                      for (index_t i = 0; i < r.in("x").numel(); ++i) r.out("y").data()[i] = f(r.in("x").data()[i]);
                    });
      if (relu) e.tolerance(0, 0).exact();
      else
        e.tolerance(2e-6, 1e-14);
      if (!small && name == "gelu") e.error({reshape("y", Shape{3, 4098})}, {"gelu: x (3, 4099) and y (3, 4098)"});
      if (small && name == "gelu") e.error({reshape("grad x", Shape{4, 8})}, {"gelu_backward: x (4, 9) and dx (4, 8)"});
      if (small && name == "silu") e.error({reshape("dout y", Shape{4, 8})}, {"silu_backward: x (4, 9) and dy (4, 8)"});
      if (small && relu) e.error({reshape("grad x", Shape{4, 8})}, {"relu_backward:", "(4, 8)"});
    }
  }

  // ---- the gated feed-forward's fused activation: g = act(h0) h1 ---------------------
  for (const Activation& act :
       {Activation{"gelu", ref::gelu}, Activation{"gelu_erf", ref::gelu_erf}, Activation{"silu", ref::silu}, Activation{"relu", ref::relu}}) {
    const std::string name = act.name;
    auto f = act.f;
    const plm::Activation kind = name == "gelu" ? plm::Activation::gelu
                                 : name == "gelu_erf" ? plm::Activation::gelu_erf
                                 : name == "silu" ? plm::Activation::silu
                                                  : plm::Activation::relu;
    for (int small = 0; small < 2; ++small) {
      const Shape s = small ? Shape{3, 5} : Shape{2, 4099};
      auto& e = add("gated", concat(name, small ? ", small, for finite differences" : ", crosses the 4096-element pieces"))
                    .in("h0", s, small ? away_from_zero(uniform(-4, 4), 1e-3) : uniform(-6, 6))
                    .grad("h0")
                    .in("h1", s)
                    .grad("h1")
                    .out("g", s)
                    .forward([kind](auto& io, auto O) { O.gated(kind, io.in("h0"), io.in("h1"), io.out("g")); })
                    .backward([kind](auto& io, auto O) {
                      O.gated_backward(kind, io.in("h0"), io.in("h1"), io.dout("g"), io.grad("h0"), io.grad("h1"));
                    })
                    .reference([f](Ref& r) {
                      for (index_t i = 0; i < r.in("h0").numel(); ++i)
                        r.out("g").data()[i] = f(r.in("h0").data()[i]) * r.in("h1").data()[i];
                    });
      if (name == "relu") e.tolerance(0, 0).exact();
      else e.tolerance(2e-6, 1e-14);
      if (small && name == "silu")
        e.error({reshape("h1", Shape{3, 4})}, {"gated: h0 (3, 5) and h1 (3, 4)"})
            .error({reshape("grad h1", Shape{5, 3})}, {"gated_backward: h0 (3, 5) and output (5, 3)"});
    }
  }

  // ---- embeddings: gather rows by id, scatter-add them back -------------------------
  auto add_gather = [&](std::string variant, index_t V, index_t C, Shape ids_shape, Init ids) -> Case& {
    Shape rows_shape = ids_shape.rank() == 1 ? Shape{ids_shape[0], C} : Shape{ids_shape[0], ids_shape[1], C};
    return add("gather", std::move(variant))
        .in("table", Shape{V, C})
        .grad_adds("table")
        .ids("ids", ids_shape, std::move(ids))
        .out("rows", rows_shape)
        .tolerance(0, 0)
        .forward([](auto& io, auto O) { O.gather(io.in("table"), io.ids("ids"), io.out("rows")); })
        .backward([](auto& io, auto O) { O.scatter_add(io.ids("ids"), io.dout("rows"), io.grad("table")); })
        .reference([=](Ref& r) {
          for (index_t q = 0; q < r.in("ids").numel(); ++q)
            for (index_t c = 0; c < C; ++c) r.out("rows").data()[q * C + c] = r.in("table").at(r.id("ids", q), c);
        });
  };
  const std::vector<double> id_list = {0, 3, 3, 10, 7, 3, 1, 0, 9, 3};  // repeats accumulate in the backward
  add_gather("repeated ids", 11, 9, Shape{2, 5}, values(id_list))
      .error({set("ids", 7, 11)}, {"gather: id 11 at flat position 7 of ids (2, 5) is outside the table's 11 rows"})
      .error({reshape("rows", Shape{2, 5, 8})}, {"gather: rows (2, 5, 8) must be ids (2, 5) + (9,)"});
  add_gather("random ids", 9, 6, Shape{4, 5}, with(below(9), {{7, 4}, {3, 4}}))
      .error({set("ids", 13, 12)}, {"gather: id 12 at flat position 13 of ids (4, 5) is outside the table's 9 rows"});
  add_gather("rank-1 ids, small", 6, 4, Shape{7}, values({5, 0, 2, 2, 5, 5, 1}));
  add("scatter_add", "repeated ids, added to the table")
      .ids("ids", Shape{2, 5}, values(id_list))
      .in("drows", Shape{2, 5, 9})
      .grad("drows")
      .out("dtable", Shape{11, 9}, uniform())
      .forward([](auto& io, auto O) { O.scatter_add(io.ids("ids"), io.in("drows"), io.out("dtable")); })
      .backward([](auto& io, auto O) { O.gather(io.dout("dtable"), io.ids("ids"), io.grad("drows")); })
      .reference([](Ref& r) {
        for (index_t q = 0; q < 10; ++q)
          for (index_t c = 0; c < 9; ++c) r.out("dtable").at(r.id("ids", q), c) += r.in("drows").data()[q * 9 + c];
      })
      .error({set("ids", 7, -1)}, {"scatter_add: id -1 at flat position 7"})
      .error({reshape("drows", Shape{2, 5, 8})}, {"scatter_add: rows (2, 5, 8) must be ids (2, 5) + (9,)"});

  // ---- reductions (accumulated in double) --------------------------------------------
  for (Shape s : {Shape{3, 5, 7}, Shape{301, 257}, Shape{100003}}) {
    add("sum", "whole tensor")
        .in("x", s)
        .scalar("sum")
        .tolerance(1e-12, 1e-12)
        .backend_tolerance(1e-9, 1e-9)
        .forward([](auto& io, auto O) { io.set_scalar("sum", O.sum(io.in("x"))); })
        .reference([](Ref& r) {
          long double s2 = 0;
          for (index_t i = 0; i < r.in("x").numel(); ++i) s2 += r.in("x").data()[i];
          r.set_scalar("sum", static_cast<double>(s2));
        });
    add("sum_squares", "whole tensor")
        .in("x", s)
        .scalar("sum_squares")
        .tolerance(1e-12, 1e-12)
        .backend_tolerance(1e-9, 1e-9)
        .forward([](auto& io, auto O) { io.set_scalar("sum_squares", O.sum_squares(io.in("x"))); })
        .reference([](Ref& r) {
          long double s2 = 0;
          for (index_t i = 0; i < r.in("x").numel(); ++i)
            s2 += static_cast<long double>(r.in("x").data()[i]) * r.in("x").data()[i];
          r.set_scalar("sum_squares", static_cast<double>(s2));
        });
  }
  const std::pair<const char*, double> finite_cases[] = {
      {"all finite", 0.5}, {"one NaN", NAN}, {"one -inf", -INFINITY}, {"one +inf", INFINITY}};
  for (auto [variant, value] : finite_cases)
    for (Shape s : {Shape{3, 5, 7}, Shape{100003}}) {
      const index_t at = s.numel() > 1000 ? 77777 : 52;
      add("all_finite", variant)
          .in("x", s, with(uniform(), {{at, value}}))
          .scalar("all_finite")
          .tolerance(0, 0)
          .exact()
          .forward([](auto& io, auto O) { io.set_scalar("all_finite", O.all_finite(io.in("x")) ? 1 : 0); })
          .reference([](Ref& r) {
            bool ok = true;
            for (index_t i = 0; i < r.in("x").numel(); ++i) ok = ok && std::isfinite(r.in("x").data()[i]);
            r.set_scalar("all_finite", ok ? 1 : 0);
          });
    }

  // ---- dropout: Philox draws, the same on every backend -----------------------------
  const std::pair<Shape, double> dropout_cases[] = {
      {Shape{100003}, 0.3}, {Shape{3, 5, 7}, 0.5}, {Shape{4, 9}, 0.1}, {Shape{4, 9}, 0.0}};
  for (auto [s, p] : dropout_cases) {
    const std::uint64_t key_seed = 1234, key_stream = 77;
    add("dropout", concat("p ", p, ", key (1234, 77)"))
        .in("x", s)
        .grad("x")
        .out("y", s)
        .alias("y", "x")
        .exact()
        .forward([=](auto& io, auto O) { O.dropout(io.in("x"), io.out("y"), io.t(p), key_seed, key_stream); })
        .backward([=](auto& io, auto O) { O.dropout_backward(io.dout("y"), io.grad("x"), io.t(p), key_seed, key_stream); })
        .reference([=](Ref& r) {
          for (index_t i = 0; i < r.in("x").numel(); ++i) {
            const bool keep =
                u32_to_uniform(philox_u32(key_seed, key_stream, static_cast<std::uint64_t>(i))) > static_cast<float>(p);
            r.out("y").data()[i] = keep ? r.in("x").data()[i] / (1 - p) : 0.0;
          }
        });
  }
  add("dropout", "probability 1 is refused")
      .in("x", Shape{4})
      .out("y", Shape{4})
      .forward([](auto& io, auto O) { O.dropout(io.in("x"), io.out("y"), io.t(1), 1, 2); })
      .error({}, {"dropout: probability 1 outside [0, 1)"});

  // ---- cross-entropy, fused with its gradient --------------------------------------------
  for (Shape s : {Shape{37, 300}, Shape{2, 5, 11}})
    for (double smoothing : {0.0, 0.1}) {
      const index_t V = s[-1], rows = s.rows();
      const Shape ts = s.rank() == 2 ? Shape{rows} : Shape{s[0], s[1]};
      // every fifth row ignored (-100); others a spread of targets
      const Init targets = each([V, ts](const std::vector<index_t>& i) {
        const index_t q = ts.rank() == 1 ? i[0] : i[0] * ts[1] + i[1];
        return q % 5 == 0 ? -100.0 : double((q * 37) % V);
      });
      const std::string sm = concat(", label smoothing ", smoothing);
      auto base = [&](const std::string& variant) -> Case& {
        return add("cross_entropy", variant + sm)
            .in("logits", s, uniform(-4, 4))
            .ids("targets", ts, targets)
            .scalar("nll")
            .scalar("count")
            .scalar("correct");
      };
      base("sums, scalar gradient scale")
          .grad("logits")
          .scalar("loss", true)
          .forward([=](auto& io, auto O) {
            const CrossEntropySums r = O.cross_entropy(io.in("logits"), io.ids("targets"), -100, io.t(smoothing));
            io.set_scalar("loss", r.loss), io.set_scalar("nll", r.nll), io.set_scalar("count", double(r.count)),
                io.set_scalar("correct", double(r.correct));
          })
          .backward([=](auto& io, auto O) {
            O.cross_entropy(io.in("logits"), io.ids("targets"), -100, io.t(smoothing), io.grad("logits"),
                            io.t(io.dscalar("loss")));
          })
          .reference([=](Ref& r) { ref::cross_entropy(r, smoothing, 1, false, false); })
          .error({set("targets", 4, double(V + 3))},
                 {concat("cross_entropy: target ", V + 3, " at row 4 is outside the vocabulary of ", V)});
      base("per-row losses and hits, per-row gradient scale")
          .grad("logits")
          .scalar("loss")
          .out("row_loss", Shape{rows})
          .aux("row_correct", Shape{rows}, Dtype::u8)
          .forward([=](auto& io, auto O) {
            auto per_row = io.cross_entropy_rows();
            per_row.loss = io.out("row_loss"), per_row.correct = io.as_u8("row_correct");
            const CrossEntropySums r =
                O.cross_entropy(io.in("logits"), io.ids("targets"), -100, io.t(smoothing), io.none(), io.t(1), per_row);
            io.set_scalar("loss", r.loss), io.set_scalar("nll", r.nll), io.set_scalar("count", double(r.count)),
                io.set_scalar("correct", double(r.correct));
          })
          .backward([=](auto& io, auto O) {
            auto per_row = io.cross_entropy_rows();
            per_row.grad_scale = io.dout("row_loss");
            O.cross_entropy(io.in("logits"), io.ids("targets"), -100, io.t(smoothing), io.grad("logits"), io.t(1), per_row);
          })
          .reference([=](Ref& r) { ref::cross_entropy(r, smoothing, 1, true, false); });
      base("gradient written in the same pass, scale 0.5")
          .scalar("loss")
          .aux("dlogits", s)
          .alias("dlogits", "logits")
          .forward([=](auto& io, auto O) {
            const CrossEntropySums r =
                O.cross_entropy(io.in("logits"), io.ids("targets"), -100, io.t(smoothing), io.out("dlogits"), io.t(0.5));
            io.set_scalar("loss", r.loss), io.set_scalar("nll", r.nll), io.set_scalar("count", double(r.count)),
                io.set_scalar("correct", double(r.correct));
          })
          .reference([=](Ref& r) { ref::cross_entropy(r, smoothing, 0.5, false, true); });
    }

  add("cross_entropy", "label smoothing 1 is refused")
      .in("logits", Shape{3, 4})
      .ids("targets", Shape{3}, constant(1))
      .forward([](auto& io, auto O) { O.cross_entropy(io.in("logits"), io.ids("targets"), -100, io.t(1)); })
      .error({}, {"cross_entropy: label_smoothing 1 outside [0, 1)"});

  // ---- optimizer updates -------------------------------------------------------------------
  struct AdamwCase {
    const char* name;
    double lr, b1, b2, eps, wd, c1, c2;
    double m_hi;
  };
  for (const AdamwCase& o : {AdamwCase{"step 2 of a run, weight decay 0.01", 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.19, 0.002, 0.1},
                             AdamwCase{"first step, zero moments, no decay", 3e-3, 0.8, 0.99, 1e-6, 0.0, 0.2, 0.01, 0.0}}) {
    add("adamw_update", o.name)
        .in("grad", Shape{12, 20})
        .aux("param", Shape{12, 20}, Dtype::compute, uniform())
        .aux("m", Shape{12, 20}, Dtype::compute, uniform(0, o.m_hi))
        .aux("v", Shape{12, 20}, Dtype::compute, uniform(0, o.m_hi))
        .forward([=](auto& io, auto O) {
          O.adamw_update(io.out("param"), io.in("grad"), io.out("m"), io.out("v"), o.lr, o.b1, o.b2, o.eps, o.wd, o.c1, o.c2);
        })
        .reference([=](Ref& r) {
          for (index_t i = 0; i < 240; ++i) {
            double &p = r.out("param").data()[i], &m = r.out("m").data()[i], &v = r.out("v").data()[i];
            const double g = r.in("grad").data()[i];
            m = o.b1 * m + (1 - o.b1) * g, v = o.b2 * v + (1 - o.b2) * g * g;
            p = p * (1 - o.lr * o.wd) - o.lr * (m / o.c1) / (std::sqrt(v / o.c2) + o.eps);
          }
        })
        .error({reshape("m", Shape{12, 19})}, {"adamw_update: param (12, 20) and m (12, 19) must have the same shape"});
  }
  for (int factored = 0; factored < 2; ++factored)
    for (int momentum = 0; momentum < 2; ++momentum) {
      const ref::Adafactor o{1e-2, 0.8, 1e-30, 1.0, 0.9, 0.01, factored != 0, momentum != 0, 3};
      const Shape ps = factored ? Shape{12, 20} : Shape{240};
      auto& e = add("adafactor_update", concat(factored ? "factored (12, 20)" : "full moments (240,)",
                                               momentum ? ", momentum 0.9" : ", no momentum", ", 3 steps"))
                    .in("grad", ps)
                    .aux("param", ps, Dtype::compute, uniform())
                    .aux("row", Shape{factored ? 12 : 240}, Dtype::compute, constant(0))
                    .scratch("scratch", ps)
                    .tolerance(1e-4, 1e-12)
                    .backend_tolerance(1e-4, 1e-9);
      if (factored) e.aux("col", Shape{20}, Dtype::compute, constant(0));
      if (momentum) e.aux("mom", ps, Dtype::compute, constant(0));
      e.forward([=](auto& io, auto O) {
         for (int step = 0; step < o.steps; ++step)
           O.adafactor_update(io.out("param"), io.in("grad"), io.out("row"), o.factored ? io.out("col") : io.none(),
                              o.momentum ? io.out("mom") : io.none(), io.out("scratch"), o.lr, o.beta2t, o.eps1, o.clip, o.beta1,
                              o.weight_decay);
       }).reference([=](Ref& r) { ref::adafactor(r, o); });
      if (factored && momentum)
        e.error({reshape("row", Shape{11})}, {"adafactor_update: moments row (11,) / col (20,) do not fit param (12, 20)"});
    }

  return table;
}

// The table for the CPU alone, built once (test_ops_cpu.cpp) and shared by the CPU test files.
const std::vector<OpCase<cpu>>& cpu_op_table();

}  // namespace plm::test::optable

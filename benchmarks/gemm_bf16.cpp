// bf16 GEMM (bf16 operands, fp32 accumulation, fp32 output) from the libraries plm
// could take as an optional dependency, next to OpenBLAS cblas_sgemm (fp32) on the
// same operands in the same run, with 1 and 2 threads.
//
// Columns (GFLOP/s = 2 M N K / median time of --reps runs after two warm-up runs;
// the candidates of one shape alternate run by run so drift hits them alike):
//   fp32 sgemm     OpenBLAS cblas_sgemm on the fp32 operands (the reference).
//   sbgemm         OpenBLAS cblas_sbgemm. Looked up at run time: builds made
//                  without BUILD_BFLOAT16 (Debian's, for one) declare it in
//                  cblas.h but do not export it; the column then reads n/a.
//   dnnl           oneDNN matmul, bf16 src and weights in the row-major layout
//                  they are stored in (transposes as strides), f32 dst.
//   dnnl pre       the same with the weights (B) reordered once, outside the
//                  timing, into the layout the primitive picks (format_tag::any).
//   dnnl fpmath    oneDNN f32 matmul with fpmath_mode::bf16: fp32 operands in,
//                  the library rounds to bf16 itself (so it sits with the +cvt
//                  figures); "(f32)" marks a build that ignored the mode.
// "+cvt" adds what a caller keeping fp32 operands pays on every call: fp32 -> bf16
// round-to-nearest-even of A and B (an AVX-512 loop, vcvtne2ps2bf16 where the
// compiler targets avx512bf16), then the GEMM. For "dnnl pre" B goes straight
// from fp32 to the blocked bf16 layout in one oneDNN reorder.
// Every product is checked against the fp32 sgemm: the relative Frobenius error
// must stay below 1e-2 (bf16 rounding of the operands gives a few 1e-3).
//
// OpenBLAS picks its kernels from the CPU at load time and can misread a virtual
// CPU (e.g. as Prescott, without AVX-512); set OPENBLAS_CORETYPE (SkylakeX, or
// Cooperlake for the avx512_bf16 sbgemm kernels) before starting the program. The
// header line prints the core it runs on.
//
//   gemm_bf16 [--reps N] [--threads 1,2]
#include <cblas.h>
#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(PLM_BENCH_DNNL)
#include <oneapi/dnnl/dnnl.hpp>
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP && !defined(_OPENMP)
#error "this oneDNN runs on OpenMP: build with -fopenmp so the thread count reaches it"
#endif
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_TBB
#include <oneapi/tbb/global_control.h>
#include <memory>
#endif
#endif

namespace {

// ---- fp32 -> bf16, round to nearest even (NaN stays a quiet NaN) ----

inline std::uint16_t bf16_rne(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

inline float bf16_to_float(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// One chunk [i0, i1) of the conversion; i0 a multiple of 32.
inline void to_bf16_chunk(const float* src, std::uint16_t* dst, std::size_t i0, std::size_t i1) {
  std::size_t i = i0;
#if defined(__AVX512BF16__)
  for (; i + 32 <= i1; i += 32) {
    const __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
    const __m512bh v = _mm512_cvtne2ps_pbh(hi, lo);  // low half from the second argument
    _mm512_storeu_si512(reinterpret_cast<void*>(dst + i), reinterpret_cast<const __m512i&>(v));
  }
#elif defined(__AVX512BW__)
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), abs = _mm512_set1_epi32(0x7fffffff),
                inf = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(0x00400000);
  for (; i + 16 <= i1; i += 16) {
    const __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + i));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs), inf);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, quiet));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
  }
#endif
  for (; i < i1; ++i) dst[i] = bf16_rne(src[i]);
}

void to_bf16(const float* src, std::uint16_t* dst, std::size_t n) {
#if defined(_OPENMP)
  const std::size_t blocks = (n + 8191) / 8192;
#pragma omp parallel for schedule(static)
  for (std::size_t b = 0; b < blocks; ++b) to_bf16_chunk(src, dst, b * 8192, std::min(n, (b + 1) * 8192));
#else
  to_bf16_chunk(src, dst, 0, n);
#endif
}

// ---- OpenBLAS sbgemm, if this OpenBLAS has it ----

using sbgemm_fn = void (*)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint, blasint,
                           float, const std::uint16_t*, blasint, const std::uint16_t*, blasint, float, float*, blasint);

sbgemm_fn find_sbgemm() { return reinterpret_cast<sbgemm_fn>(dlsym(RTLD_DEFAULT, "cblas_sbgemm")); }

// ---- helpers ----

struct Case {
  const char* name;
  int m, n, k;
  bool ta, tb;  // A stored K x M (dY^T X), B stored N x K (x W^T)
};

void fill_uniform(std::vector<float>& v, std::uint64_t seed) {
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = float((s >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f;
  }
}

double rel_frobenius(const std::vector<float>& c, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double d = double(c[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::isfinite(num) ? std::sqrt(num / den) : INFINITY;
}

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void set_threads(int nt) {
  openblas_set_num_threads(nt);
#if defined(_OPENMP)
  omp_set_num_threads(nt);
#endif
}

struct Candidate {
  std::string name;
  std::function<void()> run;
  std::vector<float>* out = nullptr;  // checked against the sgemm result
  double seconds = 0, error = -1;
};

std::string gflops(const Candidate* c, double flop) {
  if (!c) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", flop / c->seconds * 1e-9);
  return buf;
}

#if defined(PLM_BENCH_DNNL)
const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    default: return "other";
  }
}

dnnl::matmul::primitive_desc make_matmul(const dnnl::engine& eng, const dnnl::memory::desc& src,
                                         const dnnl::memory::desc& wei, const dnnl::memory::desc& dst,
                                         const dnnl::primitive_attr& attr = dnnl::primitive_attr()) {
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::matmul::primitive_desc(eng, src, wei, dst, attr);
#else
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), attr, eng);
#endif
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  std::vector<int> thread_counts = {1, 2};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      thread_counts.clear();
      for (std::string s = argv[++i]; !s.empty();) {
        const auto c = s.find(',');
        thread_counts.push_back(std::max(1, std::atoi(s.substr(0, c).c_str())));
        s = c == std::string::npos ? "" : s.substr(c + 1);
      }
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--threads 1,2]\n", argv[0]);
      return 2;
    }
  }

  const sbgemm_fn sbgemm = find_sbgemm();
  std::printf("OpenBLAS: %s; core %s; cblas_sbgemm %s\n", openblas_get_config(), openblas_get_corename(),
              sbgemm ? "found" : "not exported by this build (n/a)");
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("OPENBLAS_CORETYPE=%s\n", coretype ? coretype : "(unset)");
#if defined(PLM_BENCH_DNNL)
  const dnnl_version_t* v = dnnl_version();
  std::printf("oneDNN %d.%d.%d (%s), CPU runtime %s, ISA %s\n", v->major, v->minor, v->patch, v->hash,
              v->cpu_runtime == DNNL_RUNTIME_OMP   ? "OpenMP"
              : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB"
              : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
                                                   : "other",
              isa_name(dnnl::get_effective_cpu_isa()));
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
#else
  std::printf("oneDNN: not built in\n");
#endif
#if defined(__AVX512BF16__)
  std::printf("fp32 -> bf16: vcvtne2ps2bf16\n");
#elif defined(__AVX512BW__)
  std::printf("fp32 -> bf16: AVX-512 integer rounding\n");
#else
  std::printf("fp32 -> bf16: scalar\n");
#endif
  std::printf("median of %d runs, GFLOP/s = 2MNK/t\n\n", reps);

  const Case cases[] = {
      {"fwd x W^T 2048x768x768", 2048, 768, 768, false, true},
      {"bwd dY W 2048x768x768", 2048, 768, 768, false, false},
      {"bwd dY^T X 768x768x2048", 768, 768, 2048, true, false},
      {"fwd x Wi^T 2048x3072x768", 2048, 3072, 768, false, true},
      {"bwd dY Wi 2048x768x3072", 2048, 768, 3072, false, false},
      {"bwd dY^T X 3072x768x2048", 3072, 768, 2048, true, false},
      {"fwd x W^T 2048x256x256", 2048, 256, 256, false, true},
      {"fwd x Wi^T 2048x1024x256", 2048, 1024, 256, false, true},
  };
  const char* names[] = {"sbgemm", "sbgemm+cvt", "dnnl", "dnnl+cvt", "dnnl pre", "dnnl pre+cvt", "dnnl fpmath"};
  const int ncand = sizeof names / sizeof names[0];

  std::printf("| shape (M x N x K) | threads | fp32 sgemm |");
  for (const char* n : names) std::printf(" %s |", n);
  std::printf(" best bf16 / fp32 | best bf16+cvt / fp32 |\n|---|---:|---:|");
  for (int i = 0; i < ncand; ++i) std::printf("---:|");
  std::printf("---:|---:|\n");

  std::vector<std::string> notes;  // errors, conversion cost and oneDNN kernels, printed after the table
  bool all_ok = true;
  for (int nt : thread_counts) {
    set_threads(nt);
#if defined(PLM_BENCH_DNNL) && DNNL_CPU_RUNTIME == DNNL_RUNTIME_TBB
    tbb::global_control tbb_threads(tbb::global_control::max_allowed_parallelism, nt);
#endif
    for (const Case& c : cases) {
      const std::size_t na = std::size_t(c.m) * c.k, nb = std::size_t(c.k) * c.n, nc = std::size_t(c.m) * c.n;
      const int lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n;
      std::vector<float> a(na), b(nb), ref(nc), c_sb(nc), c_dn(nc), c_pre(nc), c_fpm(nc);
      std::vector<std::uint16_t> a16(na), b16(nb);
      fill_uniform(a, 1);
      fill_uniform(b, 2);
      const CBLAS_TRANSPOSE ta = c.ta ? CblasTrans : CblasNoTrans, tb = c.tb ? CblasTrans : CblasNoTrans;

      Candidate sg{"fp32 sgemm", [&] {
                     cblas_sgemm(CblasRowMajor, ta, tb, c.m, c.n, c.k, 1.f, a.data(), lda, b.data(), ldb, 0.f,
                                 ref.data(), c.n);
                   }};
      std::vector<Candidate> cands;  // in the order of `names`; absent ones are skipped
      std::vector<int> slot;
      auto convert = [&] {
        to_bf16(a.data(), a16.data(), na);
        to_bf16(b.data(), b16.data(), nb);
      };
      if (sbgemm) {
        auto run = [&, sbgemm] {
          sbgemm(CblasRowMajor, ta, tb, c.m, c.n, c.k, 1.f, a16.data(), lda, b16.data(), ldb, 0.f, c_sb.data(), c.n);
        };
        cands.push_back({names[0], run, &c_sb});
        slot.push_back(0);
        cands.push_back({names[1], [=] { convert(), run(); }, &c_sb});
        slot.push_back(1);
      }
#if defined(PLM_BENCH_DNNL)
      using dt = dnnl::memory::data_type;
      using md = dnnl::memory::desc;
      const dnnl::memory::dims sd{c.m, c.k}, wd{c.k, c.n}, dd{c.m, c.n};
      const dnnl::memory::dims s_str = c.ta ? dnnl::memory::dims{1, c.m} : dnnl::memory::dims{c.k, 1};
      const dnnl::memory::dims w_str = c.tb ? dnnl::memory::dims{1, c.k} : dnnl::memory::dims{c.n, 1};
      const md src_bf(sd, dt::bf16, s_str), wei_bf(wd, dt::bf16, w_str), dst_f(dd, dt::f32, dnnl::memory::dims{c.n, 1});
      const md src_f(sd, dt::f32, s_str), wei_f(wd, dt::f32, w_str);
      // Primitives are made after the thread count is set: oneDNN sizes its work split when it makes them.
      const auto pd = make_matmul(eng, src_bf, wei_bf, dst_f);
      const auto pd_pre = make_matmul(eng, src_bf, md(wd, dt::bf16, dnnl::memory::format_tag::any), dst_f);
      dnnl::primitive_attr fpm_attr;
      fpm_attr.set_fpmath_mode(dnnl::fpmath_mode::bf16);
      const auto pd_fpm = make_matmul(eng, src_f, wei_f, dst_f, fpm_attr);
      dnnl::matmul mm(pd), mm_pre(pd_pre), mm_fpm(pd_fpm);
      dnnl::memory m_a16(src_bf, eng, a16.data()), m_b16(wei_bf, eng, b16.data()), m_a(src_f, eng, a.data()),
          m_b(wei_f, eng, b.data()), m_dn(dst_f, eng, c_dn.data()), m_pre(dst_f, eng, c_pre.data()),
          m_fpm(dst_f, eng, c_fpm.data()), m_bpre(pd_pre.weights_desc(), eng);
      dnnl::reorder b_f32_to_pre(m_b, m_bpre), b_bf16_to_pre(m_b16, m_bpre);
      auto run_dn = [&] {
        mm.execute(strm, {{DNNL_ARG_SRC, m_a16}, {DNNL_ARG_WEIGHTS, m_b16}, {DNNL_ARG_DST, m_dn}});
        strm.wait();
      };
      auto run_pre = [&] {
        mm_pre.execute(strm, {{DNNL_ARG_SRC, m_a16}, {DNNL_ARG_WEIGHTS, m_bpre}, {DNNL_ARG_DST, m_pre}});
        strm.wait();
      };
      cands.push_back({names[2], run_dn, &c_dn});
      slot.push_back(2);
      cands.push_back({names[3], [=] { convert(), run_dn(); }, &c_dn});
      slot.push_back(3);
      cands.push_back({names[4], run_pre, &c_pre});
      slot.push_back(4);
      cands.push_back({names[5],
                       [&, run_pre] {
                         to_bf16(a.data(), a16.data(), na);
                         b_f32_to_pre.execute(strm, m_b, m_bpre);
                         run_pre();
                       },
                       &c_pre});
      slot.push_back(5);
      cands.push_back({names[6],
                       [&] {
                         mm_fpm.execute(strm, {{DNNL_ARG_SRC, m_a}, {DNNL_ARG_WEIGHTS, m_b}, {DNNL_ARG_DST, m_fpm}});
                         strm.wait();
                       },
                       &c_fpm});
      slot.push_back(6);
#endif

      // Warm-up; then check each result, its output first filled with garbage, against the sgemm.
      for (int w = 0; w < 2; ++w) {
        sg.run();
        for (Candidate& x : cands) x.run();
      }
      convert();
#if defined(PLM_BENCH_DNNL)
      b_bf16_to_pre.execute(strm, m_b16, m_bpre);
      strm.wait();
#endif
      for (Candidate& x : cands) {
        std::fill(x.out->begin(), x.out->end(), 1e30f);
        x.run();
        x.error = rel_frobenius(*x.out, ref);
        if (!(x.error < 1e-2)) {
          std::fprintf(stderr, "gemm_bf16: %s at %s, %d threads: relative Frobenius error %g\n", x.name.c_str(),
                       c.name, nt, x.error);
          all_ok = false;
        }
      }
      // The error of the exact product of the bf16-rounded operands, for scale.
      double bf16_floor = 0;
      {
        std::vector<float> ar(na), br(nb), cr(nc);
        for (std::size_t i = 0; i < na; ++i) ar[i] = bf16_to_float(a16[i]);
        for (std::size_t i = 0; i < nb; ++i) br[i] = bf16_to_float(b16[i]);
        cblas_sgemm(CblasRowMajor, ta, tb, c.m, c.n, c.k, 1.f, ar.data(), lda, br.data(), ldb, 0.f, cr.data(), c.n);
        bf16_floor = rel_frobenius(cr, ref);
      }

      // Timed runs, candidates interleaved.
      std::vector<std::vector<double>> t(cands.size() + 2);
      for (int r = 0; r < reps; ++r) {
        t[0].push_back(seconds(sg.run));
        for (std::size_t i = 0; i < cands.size(); ++i) t[i + 1].push_back(seconds(cands[i].run));
        t.back().push_back(seconds(convert));
      }
      for (auto& v : t) std::sort(v.begin(), v.end());
      sg.seconds = t[0][t[0].size() / 2];
      for (std::size_t i = 0; i < cands.size(); ++i) cands[i].seconds = t[i + 1][t[i + 1].size() / 2];
      const double t_cvt = t.back()[t.back().size() / 2];

      const double flop = 2.0 * c.m * c.n * c.k;
      std::vector<const Candidate*> by_slot(ncand, nullptr);
      for (std::size_t i = 0; i < cands.size(); ++i) by_slot[slot[i]] = &cands[i];
      double best = 0, best_cvt = 0;
      for (int s = 0; s < ncand; ++s) {
        if (!by_slot[s]) continue;
        const bool with_cvt = s == 1 || s == 3 || s == 5 || s == 6;
        const double g = flop / by_slot[s]->seconds;
        if (s == 6 && by_slot[s]->error < 1e-5) continue;  // fpmath ignored: it ran fp32, no bf16 figure
        (with_cvt ? best_cvt : best) = std::max(with_cvt ? best_cvt : best, g);
      }
      const double g_sg = flop / sg.seconds;
      std::printf("| %s | %d | %.1f |", c.name, nt, g_sg * 1e-9);
      for (int s = 0; s < ncand; ++s) {
        std::string cell = gflops(by_slot[s], flop);
        if (s == 6 && by_slot[s] && by_slot[s]->error < 1e-5) cell += " (f32)";
        std::printf(" %s |", cell.c_str());
      }
      auto ratio = [](double g, double ref_g) {
        char buf[32];
        if (g > 0) std::snprintf(buf, sizeof buf, "%.2f", g / ref_g);
        else std::snprintf(buf, sizeof buf, "n/a");
        return std::string(buf);
      };
      std::printf(" %s | %s |\n", ratio(best, g_sg).c_str(), ratio(best_cvt, g_sg).c_str());
      std::fflush(stdout);

      char line[512];
      int len = std::snprintf(line, sizeof line, "| %s | %d | %.2f | %.1e |", c.name, nt, t_cvt * 1e3, bf16_floor);
      for (int s = 0; s < ncand; s += 1) {
        if (s == 1 || s == 3 || s == 5) continue;  // same output as the column before
        if (by_slot[s]) len += std::snprintf(line + len, sizeof line - len, " %.1e |", by_slot[s]->error);
        else len += std::snprintf(line + len, sizeof line - len, " n/a |");
      }
#if defined(PLM_BENCH_DNNL)
      std::snprintf(line + len, sizeof line - len, " %s / %s / %s |", pd.impl_info_str(), pd_pre.impl_info_str(),
                    pd_fpm.impl_info_str());
#else
      std::snprintf(line + len, sizeof line - len, " n/a |");
#endif
      notes.push_back(line);
    }
  }

  std::printf("\nChecks: fp32 -> bf16 conversion of A and B (ms, median), relative Frobenius error against the fp32 "
              "sgemm of the exact product of the bf16 operands (the floor) and of each candidate, and the oneDNN "
              "kernels (dnnl / pre / fpmath).\n\n");
  std::printf("| shape | threads | cvt A+B ms | bf16 floor | sbgemm | dnnl | dnnl pre | dnnl fpmath | oneDNN kernels |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const std::string& l : notes) std::printf("%s\n", l.c_str());
  return all_ok ? 0 : 1;
}

// The mixture likelihood's value and gradient in one pass over the points, as an XLA FFI
// handler: sum_i logsumexp_k (coef_k . rows_i) and its gradient with respect to coef,
// sum_i r_ik rows_i (r the memberships). Compiled by bayesgmm/inference/jaxkernel.py once
// per number of components BGMM_K and of point features BGMM_F, for the machine it runs on.
//
// Points go in blocks of 64 (16 vectors of 4): each block's log terms, their maxima, one
// pass of exp, the memberships and the block's share of the gradient stay in registers and
// L1 cache, instead of the six passes over (K, N) arrays of the XLA program.
#include <cmath>
#include <cstdint>

#include "xla/ffi/api/ffi.h"

#ifndef BGMM_K
#error "BGMM_K (components) must be defined"
#endif
#ifndef BGMM_F
#error "BGMM_F (features per point) must be defined"
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int K = BGMM_K;
constexpr int F = BGMM_F;
constexpr int kVec = 16;  // vectors of 4 points per block

typedef double v4d __attribute__((vector_size(32), aligned(32)));
typedef double v4du __attribute__((vector_size(32), aligned(8)));
typedef int64_t v4i __attribute__((vector_size(32)));

inline v4d splat(double x) { return v4d{x, x, x, x}; }
inline v4d loadu(const double* p) { return *reinterpret_cast<const v4du*>(p); }

// exp(x) for x <= 0, to within 5e-16 relative; 0 below -708 (outside float64's normal
// range); NaN stays NaN. x = n log 2 + r, |r| <= log(2) / 2: exp(r) by its Taylor
// polynomial of degree 12 (Estrin's scheme) and 2**n written into the exponent bits.
inline v4d exp_nonpositive(v4d x) {
  const v4d lo = splat(-708.0);
  const v4d y = x < lo ? lo : x;
  const v4d round = splat(6755399441055744.0);  // 1.5 * 2**52: rounds to an integer
  const v4d shifted = y * splat(1.44269504088896338700e+00) + round;
  const v4d n = shifted - round;
  const v4d r = (y - n * splat(6.93147180369123816490e-01)) - n * splat(1.90821492927058770002e-10);
  const v4d r2 = r * r, r4 = r2 * r2;
  const v4d t0 = splat(1.0) + r + r2 * (splat(0.5) + r * splat(1.0 / 6.0));
  const v4d t4 = splat(1.0 / 24.0) + r * splat(1.0 / 120.0) +
                 r2 * (splat(1.0 / 720.0) + r * splat(1.0 / 5040.0));
  const v4d t8 = splat(1.0 / 40320.0) + r * splat(1.0 / 362880.0) +
                 r2 * (splat(1.0 / 3628800.0) + r * splat(1.0 / 39916800.0)) +
                 r4 * splat(1.0 / 479001600.0);
  const v4d poly = t0 + r4 * (t4 + r4 * t8);
  const v4i bits = ((v4i)shifted + 1023) << 52;  // vector casts keep the bits
  const v4d out = poly * (v4d)bits;
  return x < lo ? splat(0.0) : out;
}

double exp_scalar(double x) { return exp_nonpositive(splat(x))[0]; }

void lse(const double* coef, const double* rows, int64_t N, double* value, double* grad) {
  v4d cb[K][F];
  for (int k = 0; k < K; ++k)
    for (int f = 0; f < F; ++f) cb[k][f] = splat(coef[k * F + f]);
  double g[K][F] = {};
  v4d val = splat(0.0), logs = splat(0.0);
  alignas(32) v4d e[K][kVec];
  alignas(32) v4d top[kVec];
  const int64_t full = N / (4 * kVec) * (4 * kVec);
  for (int64_t i0 = 0; i0 < full; i0 += 4 * kVec) {
    const double* base = rows + i0;
    for (int v = 0; v < kVec; ++v) {  // log terms and their maxima
      v4d acc[K];
      for (int k = 0; k < K; ++k) acc[k] = splat(0.0);
      for (int f = 0; f < F; ++f) {
        const v4d x = loadu(base + f * N + 4 * v);
        for (int k = 0; k < K; ++k) acc[k] += cb[k][f] * x;
      }
      v4d t = acc[0];
      for (int k = 1; k < K; ++k) t = acc[k] > t ? acc[k] : t;
      top[v] = t;
      for (int k = 0; k < K; ++k) e[k][v] = acc[k] - t;
    }
    v4d prod = splat(1.0);
    for (int v = 0; v < kVec; ++v) {  // exp, totals and memberships
      v4d total = splat(0.0);
      for (int k = 0; k < K; ++k) total += (e[k][v] = exp_nonpositive(e[k][v]));
      const v4d scale = splat(1.0) / total;
      for (int k = 0; k < K; ++k) e[k][v] *= scale;
      val += top[v];
      prod *= total;  // each total is in [1, K]: 16 of them stay finite for K < 2**60
    }
    for (int j = 0; j < 4; ++j) logs[j] += std::log(prod[j]);
    // the gradient, sum_v e[k][v] * x[f][v], in blocks of 2 components x 4 features
    for (int k0 = 0; k0 < K; k0 += 2) {
      for (int f0 = 0; f0 < F; f0 += 4) {
        v4d acc[2][4] = {};
        for (int v = 0; v < kVec; ++v) {
          v4d x[4];
          for (int df = 0; df < 4; ++df)
            if (f0 + df < F) x[df] = loadu(base + (f0 + df) * N + 4 * v);
          for (int dk = 0; dk < 2; ++dk) {
            if (k0 + dk >= K) continue;
            const v4d r = e[k0 + dk][v];
            for (int df = 0; df < 4; ++df)
              if (f0 + df < F) acc[dk][df] += r * x[df];
          }
        }
        for (int dk = 0; dk < 2; ++dk)
          for (int df = 0; df < 4; ++df)
            if (k0 + dk < K && f0 + df < F) {
              const v4d a = acc[dk][df];
              g[k0 + dk][f0 + df] += (a[0] + a[1]) + (a[2] + a[3]);
            }
      }
    }
  }
  double tail = 0.0;
  for (int64_t i = full; i < N; ++i) {  // the last points, one at a time
    double lp[K], t = -INFINITY, total = 0.0;
    for (int k = 0; k < K; ++k) {
      double acc = 0.0;
      for (int f = 0; f < F; ++f) acc += coef[k * F + f] * rows[f * N + i];
      lp[k] = acc;
      t = acc > t ? acc : t;
    }
    for (int k = 0; k < K; ++k) total += (lp[k] = exp_scalar(lp[k] - t));
    tail += t + std::log(total);
    for (int k = 0; k < K; ++k)
      for (int f = 0; f < F; ++f) g[k][f] += lp[k] / total * rows[f * N + i];
  }
  const v4d s = val + logs;
  *value = (s[0] + s[1]) + (s[2] + s[3]) + tail;
  for (int k = 0; k < K; ++k)
    for (int f = 0; f < F; ++f) grad[k * F + f] = g[k][f];
}

ffi::Error Impl(ffi::Buffer<ffi::F64> coef, ffi::Buffer<ffi::F64> rows,
                ffi::ResultBuffer<ffi::F64> value, ffi::ResultBuffer<ffi::F64> grad) {
  const auto c = coef.dimensions();
  const auto r = rows.dimensions();
  if (c.size() != 2 || c[0] != K || c[1] != F || r.size() != 2 || r[0] != F)
    return ffi::Error::InvalidArgument("bayesgmm kernel: coef (K, F) and rows (F, N) expected");
  if (value->element_count() != 1 || grad->element_count() != K * F)
    return ffi::Error::InvalidArgument("bayesgmm kernel: outputs () and (K, F) expected");
  lse(coef.typed_data(), rows.typed_data(), r[1], value->typed_data(), grad->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BayesgmmLse, Impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>());

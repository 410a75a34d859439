/* What DPO (forward + gradient + TRL's four metrics, B = 4194304) costs at best on 4-lane f32
 * vectors, the widest Cranelift 0.135 emits on x86-64: the fused pass lossc's JIT runs,
 * written by hand with SSE4.1 + FMA intrinsics and compiled by gcc -O2, against a pass that
 * only reads the four inputs and writes the four gradients (the memory floor).
 *
 *   gcc -O2 -msse4.1 -mfma -fopenmp benches/dpo_floor.c -o /tmp/dpo_floor -lm
 *   OMP_NUM_THREADS=2 /tmp/dpo_floor
 *
 * The exp and log1p here are simpler than lossc's (no special values, fewer guards), so the
 * fused time is a lower bound for 4-lane code. A second fused pass sums the loss's
 * log1p(exp(-|z|)) terms as lossc now does, as the log of a product (compiler::log_product).
 * benches/RESULTS.md has the numbers. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define N (1L << 22)
typedef __m128 V;
#define S(x) _mm_set1_ps(x)

/* exp(x) for x <= 0 (Cody-Waite reduction, degree-5 polynomial). */
static inline V vexp(V x) {
    x = _mm_max_ps(x, S(-87.3f));
    V k = _mm_round_ps(_mm_mul_ps(x, S(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm_fnmadd_ps(k, S(0.693359375f), x);
    r = _mm_fnmadd_ps(k, S(-2.12194440e-4f), r);
    V p = S(1.9875691500e-4f);
    p = _mm_fmadd_ps(p, r, S(1.3981999507e-3f));
    p = _mm_fmadd_ps(p, r, S(8.3334519073e-3f));
    p = _mm_fmadd_ps(p, r, S(4.1665795894e-2f));
    p = _mm_fmadd_ps(p, r, S(1.6666665459e-1f));
    p = _mm_fmadd_ps(p, r, S(5.0000001201e-1f));
    p = _mm_add_ps(_mm_fmadd_ps(_mm_mul_ps(p, r), r, r), S(1.f));
    __m128i e = _mm_slli_epi32(_mm_add_epi32(_mm_cvtps_epi32(k), _mm_set1_epi32(127)), 23);
    return _mm_mul_ps(p, _mm_castsi128_ps(e));
}

/* log(1 + e) for e in [0, 1], given 1 / (1 + e): log of the mantissa through s = f / (2 + f),
 * plus the rounding of 1 + e, as lossc's log1p_unit. */
static inline V vlog1p_unit(V e, V recip) {
    V y = _mm_add_ps(S(1.f), e);
    __m128i t = _mm_add_epi32(_mm_castps_si128(y), _mm_set1_epi32(0x3f800000 - 0x3f3504f3));
    V kf = _mm_cvtepi32_ps(_mm_sub_epi32(_mm_srai_epi32(t, 23), _mm_set1_epi32(127)));
    V m = _mm_castsi128_ps(_mm_add_epi32(_mm_and_si128(t, _mm_set1_epi32(0x7fffff)), _mm_set1_epi32(0x3f3504f3)));
    V f = _mm_sub_ps(m, S(1.f));
    V c = _mm_mul_ps(_mm_sub_ps(e, _mm_sub_ps(y, S(1.f))), recip);
    V s = _mm_div_ps(f, _mm_add_ps(S(2.f), f));
    V z = _mm_mul_ps(s, s);
    V w = _mm_fmadd_ps(_mm_fmadd_ps(S(0.2426f), z, S(0.2857f)), z, S(0.4f));
    V hfsq = _mm_mul_ps(_mm_mul_ps(S(0.5f), f), f);
    V r = _mm_fmadd_ps(_mm_mul_ps(z, w), z, _mm_mul_ps(z, S(0.6666667f)));
    r = _mm_fmadd_ps(s, _mm_add_ps(hfsq, r), _mm_fmadd_ps(kf, S(9.05800061e-06f), c));
    return _mm_add_ps(_mm_fmadd_ps(kf, S(6.93138123e-01f), f), _mm_sub_ps(r, hfsq));
}

static float *in[4], *grad[4];

/* The fused pass over [lo, hi): loss and metric sums into out[0..5], gradients stored. With
 * `product`, the loss's log1p(exp(-|z|)) terms are summed as lossc now does
 * (compiler::log_product): log1p(Q), Q = prod(1 + e) - 1 kept per lane as Q + e + Q*e and
 * folded into the sum every 8 steps (lossc folds when a lane passes 2^64), one FMA per term
 * instead of a log1p and its division. */
static inline void fused_pass(long lo, long hi, double *out, int product) {
    const V beta = S(0.1f), g_scale = S(-0.1f / N), zero = _mm_setzero_ps(), sign = S(-0.f);
    V q = zero, loss = zero, chosen = zero, rejected = zero, correct = zero, margin = zero;
    for (long i = lo; i < hi; i += 4) {
        V pc = _mm_loadu_ps(in[0] + i), pr = _mm_loadu_ps(in[1] + i);
        V rc = _mm_loadu_ps(in[2] + i), rr = _mm_loadu_ps(in[3] + i);
        V z = _mm_mul_ps(beta, _mm_sub_ps(_mm_sub_ps(pc, pr), _mm_sub_ps(rc, rr)));
        V e = vexp(_mm_or_ps(z, sign)); /* exp(-|z|) */
        V r = _mm_div_ps(S(1.f), _mm_add_ps(S(1.f), e));
        V neg = _mm_cmplt_ps(z, zero);
        V sig_neg = _mm_blendv_ps(_mm_mul_ps(e, r), r, neg); /* sigmoid(-z) */
        V g = _mm_mul_ps(g_scale, sig_neg);                  /* d loss / d policy_chosen */
        V ng = _mm_xor_ps(g, sign);
        _mm_storeu_ps(grad[0] + i, g);
        _mm_storeu_ps(grad[1] + i, ng);
        _mm_storeu_ps(grad[2] + i, ng);
        _mm_storeu_ps(grad[3] + i, g);
        V cr = _mm_mul_ps(beta, _mm_sub_ps(pc, rc)), rj = _mm_mul_ps(beta, _mm_sub_ps(pr, rr));
        chosen = _mm_add_ps(chosen, cr);
        rejected = _mm_add_ps(rejected, rj);
        correct = _mm_add_ps(correct, _mm_and_ps(_mm_cmpgt_ps(cr, rj), S(1.f)));
        margin = _mm_add_ps(margin, _mm_sub_ps(cr, rj));
        /* -log sigmoid(z) = max(-z, 0) + log1p(exp(-|z|)) */
        loss = _mm_add_ps(loss, _mm_max_ps(_mm_xor_ps(z, sign), zero));
        if (!product) {
            loss = _mm_add_ps(loss, vlog1p_unit(e, r));
        } else {
            q = _mm_add_ps(_mm_fmadd_ps(q, e, q), e);
            if (((i - lo) & 31) == 28) {
                loss = _mm_add_ps(loss, vlog1p_unit(q, _mm_div_ps(S(1.f), _mm_add_ps(S(1.f), q))));
                q = zero;
            }
        }
    }
    if (product) loss = _mm_add_ps(loss, vlog1p_unit(q, _mm_div_ps(S(1.f), _mm_add_ps(S(1.f), q))));
    V acc[5] = {loss, chosen, rejected, correct, margin};
    for (int k = 0; k < 5; k++) {
        float v[4];
        _mm_storeu_ps(v, acc[k]);
        out[k] += (double)v[0] + v[1] + v[2] + v[3];
    }
}

static void fused(long lo, long hi, double *out) { fused_pass(lo, hi, out, 0); }
static void fused_product(long lo, long hi, double *out) { fused_pass(lo, hi, out, 1); }

/* Reads the four inputs and writes four gradients, nothing else. */
static void copy_only(long lo, long hi, double *out) {
    V acc = _mm_setzero_ps();
    for (long i = lo; i < hi; i += 4) {
        V a = _mm_loadu_ps(in[0] + i), b = _mm_loadu_ps(in[1] + i);
        V c = _mm_loadu_ps(in[2] + i), d = _mm_loadu_ps(in[3] + i);
        V z = _mm_sub_ps(_mm_sub_ps(a, b), _mm_sub_ps(c, d));
        _mm_storeu_ps(grad[0] + i, z);
        _mm_storeu_ps(grad[1] + i, a);
        _mm_storeu_ps(grad[2] + i, b);
        _mm_storeu_ps(grad[3] + i, c);
        acc = _mm_add_ps(acc, d);
    }
    float v[4];
    _mm_storeu_ps(v, acc);
    out[0] += v[0];
}

static double run(void (*pass)(long, long, double *), double *sums) {
    double best = 1e30;
    for (int rep = 0; rep < 9; rep++) {
        for (int k = 0; k < 5; k++) sums[k] = 0;
        double t0 = omp_get_wtime();
#pragma omp parallel
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            long lo = N * t / n / 4 * 4, hi = N * (t + 1) / n / 4 * 4;
            double local[5] = {0};
            pass(lo, hi, local);
#pragma omp critical
            for (int k = 0; k < 5; k++) sums[k] += local[k];
        }
        double ms = (omp_get_wtime() - t0) * 1e3;
        if (ms < best) best = ms;
    }
    return best;
}

int main(void) {
    srand(0);
    for (int k = 0; k < 4; k++) {
        in[k] = aligned_alloc(64, N * sizeof(float));
        grad[k] = aligned_alloc(64, N * sizeof(float));
        for (long i = 0; i < N; i++) in[k][i] = -100.f + 20.f * ((float)rand() / RAND_MAX - 0.5f);
    }
    double sums[5];
    double fused_ms = run(fused, sums);
    printf("fused 4-lane pass: %.2f ms (best of 9) on %d threads, loss %.6f\n", fused_ms,
           omp_get_max_threads(), sums[0] / N);
    double product_ms = run(fused_product, sums);
    printf("fused 4-lane pass, log1p as a product: %.2f ms, loss %.6f\n", product_ms, sums[0] / N);
    double copy_ms = run(copy_only, sums);
    printf("read 4 + write 4 arrays only: %.2f ms (%.1f GB/s)\n", copy_ms,
           8.0 * N * sizeof(float) / copy_ms / 1e6);
    return 0;
}

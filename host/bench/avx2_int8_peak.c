/* Peak multiply-add rate of AVX2's two integer dot-product paths on this CPU, the figures
 * docs/export.md ("blocks across rows, byte pairs, fused int8 tails") compares the int8
 * kernels with: 12 independent accumulators (4 channels x 3 vectors, the register block's
 * shape), operands in registers, nothing loaded.
 *   - i16 pairs: vpmaddwd + vpaddd, 16 multiply-adds an instruction pair;
 *   - u8 x i8 bytes: vpmaddubsw + vpmaddwd(ones) + vpaddd, 32 multiply-adds.
 * Build and run: gcc -O2 -mavx2 host/bench/avx2_int8_peak.c -o /tmp/avx2_int8_peak &&
 * /tmp/avx2_int8_peak   (prints G multiply-adds/s for each path; one core). */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 100000000L

int main(void) {
    __m256i a0 = _mm256_set1_epi8(3), a1 = _mm256_set1_epi8(5), a2 = _mm256_set1_epi8(7);
    __m256i w = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_setzero_si256();
    double t = now();
    for (long i = 0; i < N; i++) {
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            __m256i ww = _mm256_add_epi32(w, _mm256_set1_epi32(o));
            acc[o * 3 + 0] = _mm256_add_epi32(acc[o * 3 + 0], _mm256_madd_epi16(a0, ww));
            acc[o * 3 + 1] = _mm256_add_epi32(acc[o * 3 + 1], _mm256_madd_epi16(a1, ww));
            acc[o * 3 + 2] = _mm256_add_epi32(acc[o * 3 + 2], _mm256_madd_epi16(a2, ww));
        }
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2));
    }
    double d = now() - t;
    printf("i16 pairs (vpmaddwd): %.1f G multiply-adds/s\n", N * 12.0 * 16 / d / 1e9);
    t = now();
    for (long i = 0; i < N; i++) {
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            __m256i ww = _mm256_add_epi32(w, _mm256_set1_epi32(o));
            for (int v = 0; v < 3; v++) {
                __m256i x = v == 0 ? a0 : v == 1 ? a1 : a2;
                __m256i pairs = _mm256_maddubs_epi16(x, ww);
                acc[o * 3 + v] = _mm256_add_epi32(acc[o * 3 + v], _mm256_madd_epi16(pairs, ones));
            }
        }
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2));
    }
    d = now() - t;
    printf("u8 x i8 bytes (vpmaddubsw): %.1f G multiply-adds/s\n", N * 12.0 * 32 / d / 1e9);
    int s = 0;
    for (int i = 0; i < 12; i++) s += _mm256_extract_epi32(acc[i], 0);
    return s == 12345;
}

// Shared by the C measurements of benches/ (machine.c, floor.c): a wall clock and the
// xorshift64 generator the Rust benches use too, so that they pick keys the same way.
#ifndef RATELIMITD_BENCH_H
#define RATELIMITD_BENCH_H

#include <stdint.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static uint64_t xorshift(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

#endif

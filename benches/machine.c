// What the machine itself costs, to read the engine figures against (docs/PERFORMANCE.md):
// a TSC read, an uncontended locked instruction, a dependent random load (latency) at growing
// working sets, and independent random loads issued 16 at a time behind prefetches (what a
// batched check can hope for at millions of keys).
//
//   gcc -O2 -o /tmp/machine benches/machine.c && taskset -c 1 /tmp/machine
//
// Every loop is a fixed amount of work timed with CLOCK_MONOTONIC; nothing here is asserted.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <x86intrin.h>

#include "bench.h"

int main(void) {
  const long n = 20000000;
  uint64_t sink = 0, x = 88172645463325252ull;
  double t0 = now_ns();
  for (long i = 0; i < n; i++) sink += __rdtsc();
  printf("rdtsc                          %6.1f ns\n", (now_ns() - t0) / n);

  volatile int word = 0;
  t0 = now_ns();
  for (long i = 0; i < n; i++) {
    while (__sync_lock_test_and_set(&word, 1)) {
    }
    __sync_lock_release(&word);  // a plain store, as engine/src/shardlock.rs releases
  }
  printf("locked xchg + plain release    %6.1f ns\n", (now_ns() - t0) / n);

  for (size_t bytes = 1 << 15; bytes <= (size_t)1 << 30; bytes <<= 3) {
    size_t len = bytes / 8;
    uint64_t *a = mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 1;
    for (size_t i = 0; i < len; i++) a[i] = i;
    for (size_t i = len - 1; i > 0; i--) {  // Sattolo: one cycle through every slot
      size_t j = xorshift(&x) % i, t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    const long m = 4000000;
    size_t p = 0;
    t0 = now_ns();
    for (long i = 0; i < m; i++) p = a[p];
    double chase = (now_ns() - t0) / m;
    t0 = now_ns();
    for (long i = 0; i < m / 16; i++) {
      size_t idx[16];
      for (int j = 0; j < 16; j++) {
        idx[j] = xorshift(&x) % len;
        _mm_prefetch((const char *)&a[idx[j]], _MM_HINT_T0);
      }
      for (int j = 0; j < 16; j++) a[idx[j]] += 1;
    }
    double batch = (now_ns() - t0) / m;
    printf("%9zu KiB: dependent load %6.1f ns, batch of 16 prefetched %6.1f ns per load\n",
           bytes >> 10, chase, batch);
    sink += p;
    munmap(a, bytes);
  }
  return sink == 42;
}

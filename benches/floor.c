// The least a batched RL.CHECK can cost on this machine: a bare GCRA check with nothing but
// what the check-cost goal needs — a key hashed to a 64-bit fingerprint, a shard lock (the engine is
// shared between threads), one open-addressing probe for the 16-byte slot, the GCRA decision
// with the reply's `remaining` (a multiply by the interval's reciprocal, as engine/src/gcra.rs
// does), the TAT written in place — in the same workload as `rl_check/batch16` of
// benches/engine.rs (16 pseudo-random keys per batch, their slots prefetched first, the clock
// read once per batch). No expiry wheel, bounds, replication marks, limit lookup, several
// windows or rescaling: a floor to read the engine's figures against, not a rate limiter.
//
//   gcc -O2 -o /tmp/floor benches/floor.c && taskset -c 1 /tmp/floor [KEYS...]
//
// KEYS defaults to 1000 1000000 10000000. Each size is timed three times (the VM's speed
// drifts). Nothing here is asserted.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <x86intrin.h>

#include "bench.h"

#define SHARDS 256
#define BATCH 16

typedef struct {
  uint64_t fp, tat;
} slot_t;

typedef struct {
  volatile int lock;
  uint64_t mask;
  slot_t *slots;
} __attribute__((aligned(128))) shard_t;

static shard_t shards[SHARDS];

static inline uint64_t mix(uint64_t a, uint64_t b) {
  __uint128_t p = (__uint128_t)a * b;
  return (uint64_t)p ^ (uint64_t)(p >> 64);
}

// A folded-multiply hash of the 8-byte client id and the 11-byte endpoint "/api/search"
// (three 8-byte reads, as a short-input hash such as xxh3 or foldhash makes); 0 and 1 are
// kept free as the empty and deleted marks.
static inline uint64_t fingerprint(uint64_t client) {
  static const char ep[16] = "/api/search";
  uint64_t e0, e1;
  memcpy(&e0, ep, 8);
  memcpy(&e1, ep + 8, 8);
  uint64_t h = mix(client ^ 0x243f6a8885a308d3ull, e0 ^ 0x13198a2e03707344ull);
  h = mix(h ^ e1 ^ 11, 0xa4093822299f31d0ull);
  return h < 2 ? h + 2 : h;
}

static inline shard_t *shard_of(uint64_t fp) { return &shards[fp >> 56]; }
static inline uint64_t home(const shard_t *s, uint64_t fp) { return fp & s->mask; }

// All shards' slots in one mapping, 2 MiB-aligned and advised for transparent huge pages
// unless FLOOR_HUGE=0 (the engine's arena gives its tables huge pages the same way).
static void *region;
static size_t region_bytes;

static slot_t *alloc_slots(size_t bytes) {
  const size_t huge = 2 << 20;
  if (region) munmap(region, region_bytes);
  region_bytes = (bytes + huge - 1) / huge * huge + huge;
  region = mmap(0, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) exit(1);
  char *aligned = (char *)(((uintptr_t)region + huge - 1) & ~(uintptr_t)(huge - 1));
  const char *env = getenv("FLOOR_HUGE");
  if (!env || atoi(env)) madvise(aligned, region_bytes - huge, MADV_HUGEPAGE);
  return (slot_t *)aligned;
}

static void fill(uint64_t keys) {
  uint64_t per = keys / SHARDS + 1, cap = 16;
  while (cap * 3 / 4 < per * 5 / 4) cap <<= 1;  // load at most ~3/4 even for unlucky shards
  slot_t *all = alloc_slots(SHARDS * cap * sizeof(slot_t));
  for (int i = 0; i < SHARDS; i++) {
    shards[i].slots = all + i * cap;
    shards[i].mask = cap - 1;
  }
  for (uint64_t k = 0; k < keys; k++) {
    uint64_t fp = fingerprint(k);
    shard_t *s = shard_of(fp);
    uint64_t i = home(s, fp);
    while (s->slots[i].fp != 0) i = (i + 1) & s->mask;
    s->slots[i].fp = fp;
  }
}

typedef struct {
  int allowed;
  uint64_t remaining;
} result_t;

// One window: 1e9 per hour (nothing is ever denied), as benches/engine.rs sets it.
static const uint64_t T = 3600000000000ull / 1000000000ull;  // interval, ns
static const uint64_t CAPACITY = 1000000000ull;

static double run(uint64_t keys, long batches) {
  const uint64_t tau = T * CAPACITY, recip = (uint64_t)(((__uint128_t)1 << 64) / T);
  uint64_t x = 0x9E3779B97F4A7C15ull, sink = 0;
  result_t out[BATCH];
  double t0 = now_ns();
  for (long b = 0; b < batches; b++) {
    uint64_t fps[BATCH];
    for (int j = 0; j < BATCH; j++) {
      uint64_t k = (uint64_t)(((__uint128_t)xorshift(&x) * keys) >> 64);
      fps[j] = fingerprint(k);
      shard_t *s = shard_of(fps[j]);
      _mm_prefetch((const char *)&s->slots[home(s, fps[j])], _MM_HINT_T0);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
    for (int j = 0; j < BATCH; j++) {
      uint64_t fp = fps[j];
      shard_t *s = shard_of(fp);
      while (__sync_lock_test_and_set(&s->lock, 1)) {
      }
      uint64_t i = home(s, fp);
      while (s->slots[i].fp != fp) i = (i + 1) & s->mask;  // every key was filled in
      uint64_t tat = s->slots[i].tat;
      uint64_t base = tat > now ? tat : now;
      uint64_t ahead = base + T - now;
      int allowed = ahead <= tau;
      if (allowed) s->slots[i].tat = base + T;
      __sync_lock_release(&s->lock);
      uint64_t left = allowed ? tau - ahead : tau - (base - now);
      uint64_t q = (uint64_t)(((__uint128_t)left * recip) >> 64);
      if (left - q * T >= T) q++;
      out[j].allowed = allowed;
      out[j].remaining = q;
    }
    for (int j = 0; j < BATCH; j++) sink += out[j].allowed + out[j].remaining;
  }
  double ns = (now_ns() - t0) / (batches * BATCH);
  if (sink == 42) printf(" ");
  return ns;
}

int main(int argc, char **argv) {
  uint64_t sizes[16] = {1000, 1000000, 10000000};
  int n = 3;
  if (argc > 1) {
    n = 0;
    for (int i = 1; i < argc && n < 16; i++) sizes[n++] = strtoull(argv[i], 0, 10);
  }
  for (int i = 0; i < n; i++) {
    fill(sizes[i]);
    run(sizes[i], 200000);  // warm up
    printf("%9lu keys:", (unsigned long)sizes[i]);
    for (int r = 0; r < 3; r++) printf(" %6.1f", run(sizes[i], 1000000));
    printf(" ns per check\n");
  }
  return 0;
}

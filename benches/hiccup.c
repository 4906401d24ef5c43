// How long this machine takes a core away from a thread that never blocks: a loop that only
// reads CLOCK_MONOTONIC, pinned to one core, recording every gap between two consecutive
// readings above 20 us. No server, no network, no other work of ours is involved, so a gap
// here is the floor under any request's max latency on this machine (the mass-expiry goal
// compares a max with a p99; docs/PERFORMANCE.md, "Expiry").
//
//   gcc -O2 -o /tmp/hiccup benches/hiccup.c && taskset -c 0 /tmp/hiccup [SECONDS]
//
// SECONDS defaults to 60. Also prints the steal time the kernel accounted on all cores over
// the run (/proc/stat), which is time the hypervisor ran something else. Nothing is asserted.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

// Jiffies of steal time over all cores (the 8th number of /proc/stat's "cpu" line).
static long long steal(void) {
  FILE *f = fopen("/proc/stat", "r");
  long long v[8] = {0};
  if (!f) return -1;
  if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
             &v[4], &v[5], &v[6], &v[7]) != 8)
    v[7] = -1;
  fclose(f);
  return v[7];
}

int main(int argc, char **argv) {
  const double seconds = argc > 1 ? atof(argv[1]) : 60;
  // Gap buckets, lower bounds in us; the last is open-ended.
  static const uint64_t lower_us[] = {20, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000};
  enum { N = sizeof lower_us / sizeof lower_us[0] };
  uint64_t count[N] = {0}, max = 0, readings = 0;
  double total_ms[N] = {0};
  long long steal0 = steal();
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), last = start;
  while (last < end) {
    uint64_t t = now_ns(), gap = t - last;
    last = t;
    readings++;
    if (gap < 20000) continue;
    int b = N - 1;
    while (b > 0 && gap < lower_us[b] * 1000) b--;
    count[b]++;
    total_ms[b] += gap / 1e6;
    if (gap > max) max = gap;
  }
  long long steal1 = steal();
  printf("%.0f s, %llu clock readings (%.1f ns apart on average)\n", seconds,
         (unsigned long long)readings, (last - start) / (double)readings);
  printf("gaps of at least   count   ms in all\n");
  for (int b = 0; b < N; b++)
    printf("%8.3f ms   %9llu   %9.1f\n", lower_us[b] / 1000.0, (unsigned long long)count[b],
           total_ms[b]);
  printf("largest gap %.3f ms\n", max / 1e6);
  if (steal0 >= 0 && steal1 >= 0)
    printf("steal time over the run, all cores: %lld jiffies\n", steal1 - steal0);
  return 0;
}

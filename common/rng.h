/* rng: deterministic, portable random numbers (same stream on every machine and
 * compiler). xoshiro256** seeded by splitmix64; the state is a plain struct so that it
 * can be saved in checkpoints. Header-only; usable from CUDA (FT_HD). */
#ifndef FTLAB_RNG_H
#define FTLAB_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define FT_HD __host__ __device__
#else
#define FT_HD
#endif

struct rng {
	uint64_t s[4];
};

FT_HD static inline uint64_t rng_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Seeds from a 64-bit seed and a stream number, so independent consumers (shuffling,
 * dropout, sampling) get independent streams from one experiment seed. */
FT_HD static inline void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
	for (int i = 0; i < 4; i++)
		r->s[i] = rng_splitmix64(&x);
}

FT_HD static inline uint64_t rng_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

FT_HD static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rng_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rng_rotl(s[3], 45);
	return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
FT_HD static inline double rng_uniform(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform float in [0, 1) with 24 random bits. */
FT_HD static inline float rng_uniform_f(struct rng *r)
{
	return (float)(rng_next(r) >> 40) * 0x1.0p-24f;
}

/* Uniform integer in [0, n) without modulo bias; n > 0. */
FT_HD static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do
		x = rng_next(r);
	while (x >= limit);
	return x % n;
}

#endif

/* search_problems: the small optimisation problems and the random-search yardstick that
 * the tests of the search methods (test_bayes, test_tpe) share, and reading a JSON array of
 * numbers from their reference fixtures. Uses cmocka assertions: call from tests only. */
#ifndef FTLAB_TEST_SEARCH_PROBLEMS_H
#define FTLAB_TEST_SEARCH_PROBLEMS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* A function to minimise over a point of the search space. */
typedef double (*search_objective)(const double *x);

/* A smooth bowl in the unit square with its minimum 0 at (0.3, 0.7), plus a ridge. */
double search_bowl(const double *x);
/* A mixed space: x[0] an integer level 0..5, x[1] a category of 3, x[2] a real in [0, 1];
 * the minimum 0 is at level 3, category 2, x[2] = 0.25. */
double search_mixed(const double *x);
/* The best value of n uniform random points of the unit cube of nd (<= 8) dimensions. */
double search_random_best(size_t nd, search_objective f, size_t n, uint64_t seed);
/* Sorts v[0..n) in place and returns its median (the upper one for even n). */
double search_median(double *v, size_t n);
/* A JSON array as a calloc'd array of doubles (null as NaN); the caller frees it. */
double *search_json_doubles(const json_t *a);

#endif

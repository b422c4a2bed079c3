/* ops_cpu_internal: what the CPU backend's files share (not for other layers). */
#ifndef FTLAB_OPS_CPU_INTERNAL_H
#define FTLAB_OPS_CPU_INTERNAL_H

/* The matmul of struct ops (see ops.h), on oneDNN. */
void ops_cpu_matmul(float *c, const float *a, const float *b, int m, int n, int k,
		    unsigned flags, float alpha, float beta);

#endif

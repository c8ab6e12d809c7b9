// Shared device code of the CuPy kernels: the working type, the per-sample losses (twin of
// kernels/numba/losses.py), block reductions and the end-of-step bookkeeping. Compiled with
// -Dreal_t=double or -Dreal_t=float; constants are written through real_t so that float kernels never
// promote to double.
#ifndef real_t
#error "compile with -Dreal_t=double or -Dreal_t=float"
#endif

// NVRTC has no <math.h>, hence no INFINITY macro.
__device__ __forceinline__ real_t neg_inf() { return -real_t(__int_as_float(0x7f800000)); }

#define LOSS_LOGISTIC 0
#define LOSS_EXPONENTIAL 1
#define LOSS_SQUARED 2
#define LOSS_CROSS_ENTROPY 3  // the codes of kernels/codes.py (tested against it)

__device__ __forceinline__ real_t softplus(real_t z) {
    // log(1 + e^z) without overflow: z + log1p(e^-z) for z > 0
    return z > real_t(0) ? z + log1p(exp(-z)) : log1p(exp(z));
}

__device__ __forceinline__ real_t sigmoid(real_t z) {
    if (z >= real_t(0)) return real_t(1) / (real_t(1) + exp(-z));
    real_t e = exp(z);
    return e / (real_t(1) + e);
}

// Value of one sample's loss; its derivative d loss / d f goes to *slope (not divided by n).
__device__ __forceinline__ real_t point_loss(int code, real_t f, real_t y, real_t* slope) {
    if (code == LOSS_LOGISTIC) {
        real_t m = y * f;
        *slope = -y * sigmoid(-m);
        return softplus(-m);
    }
    if (code == LOSS_EXPONENTIAL) {
        real_t e = exp(-y * f);
        *slope = -y * e;
        return e;
    }
    real_t r = f - y;
    *slope = real_t(2) * r;
    return r * r;
}

// Sum of v over a block of blockDim.x threads (a power of two, at most 1024); every thread gets the sum.
__device__ real_t block_sum(real_t v, real_t* shared) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + warpSize - 1) / warpSize;
    v = threadIdx.x < warps ? shared[threadIdx.x] : real_t(0);
    if (warp == 0)
        for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}

// Maximum of v over a block (same contract as block_sum).
__device__ real_t block_max(real_t v, real_t* shared) {
    for (int offset = warpSize / 2; offset > 0; offset /= 2) v = fmax(v, __shfl_down_sync(0xffffffffu, v, offset));
    int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + warpSize - 1) / warpSize;
    v = threadIdx.x < warps ? shared[threadIdx.x] : neg_inf();
    if (warp == 0)
        for (int offset = warpSize / 2; offset > 0; offset /= 2) v = fmax(v, __shfl_down_sync(0xffffffffu, v, offset));
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}

// End of a step for B runs (the bookkeeping slots of runs 0..B-1; the engines pass one run's slots, B = 1):
// a run still going whose accumulated loss is not finite is frozen at this step (diverged[b] = step[b],
// its update kernels having already skipped the step), else its step counter advances; the accumulator
// is reset. The counters are per run and stop at the divergence step, so a CUDA graph replayed past a
// divergence still reports it at the right step. 64-bit: counters never wrap.
extern "C" __global__ void finish_step(real_t* loss, long long* diverged, long long* step, int B) {
    for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < B; b += blockDim.x * gridDim.x) {
        if (diverged[b] < 0) {
            if (isfinite(loss[b])) step[b] += 1;
            else diverged[b] = step[b];
        }
        loss[b] = real_t(0);
    }
}

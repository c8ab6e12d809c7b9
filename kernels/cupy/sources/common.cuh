// Shared device code of the CuPy kernels: the working type and the per-sample losses (twin of
// kernels/numba/losses.py). Compiled with -Dreal_t=double or -Dreal_t=float; constants are written through
// real_t so that float kernels never promote to double.
#ifndef real_t
#error "compile with -Dreal_t=double or -Dreal_t=float"
#endif

// NVRTC has no <math.h>, hence no INFINITY macro.
__device__ __forceinline__ real_t neg_inf() { return -real_t(__int_as_float(0x7f800000)); }

#define LOSS_LOGISTIC 0
#define LOSS_EXPONENTIAL 1
#define LOSS_SQUARED 2

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

// End of a step for B runs: a run whose loss is not finite is frozen at this step (diverged[b] = step), the
// loss accumulators are reset, and the device-side step counter advances (so that a captured CUDA graph,
// replayed, still knows its step).
extern "C" __global__ void finish_step(real_t* loss, real_t* last_loss, int* diverged, int* step, int B) {
    // launched as one block: every thread reads the step before thread 0 advances it
    for (int b = threadIdx.x; b < B; b += blockDim.x) {
        last_loss[b] = loss[b];
        if (diverged[b] < 0 && !isfinite(loss[b])) diverged[b] = *step;
        loss[b] = real_t(0);
    }
    __syncthreads();
    if (threadIdx.x == 0) *step += 1;
}

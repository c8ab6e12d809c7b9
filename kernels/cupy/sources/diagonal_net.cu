// Diagonal linear net, w = u^L - v^L, f = X w, on +-1 data stored as int8 (twin of
// kernels/numba/diagonal_net.py). One run per launch: the caller passes run b's u, v and its slots of the
// per-run bookkeeping arrays (loss accumulator, divergence flag: pointers at offset b), so no kernel here
// reads blockIdx.y; finish_step of common.cuh is launched on the same slots with B = 1.

__device__ __forceinline__ real_t ipow(real_t x, int k) {
    real_t out = real_t(1);
    for (int i = 0; i < k; ++i) out *= x;
    return out;
}

// w_j = u_j^L - v_j^L
extern "C" __global__ void diag_weights(const real_t* u, const real_t* v, int L, int d, real_t* w) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < d) w[j] = ipow(u[j], L) - ipow(v[j], L);
}

// One block per sample i (X row-major (n, d)): f_i = <X_i, w>, then its loss and slope g_i = dloss/df / n;
// the mean loss is accumulated into *loss. Skipped once the run has diverged.
extern "C" __global__ void diag_forward_loss(const signed char* X, const real_t* w, const real_t* y, int n, int d,
                                             int code, real_t* f, real_t* g, real_t* loss,
                                             const long long* diverged) {
    __shared__ real_t shared[32];
    if (*diverged >= 0) return;
    int i = blockIdx.x;
    const signed char* row = X + (size_t)i * d;
    real_t acc = real_t(0);
    for (int j = threadIdx.x; j < d; j += blockDim.x) acc += real_t(row[j]) * w[j];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) {
        real_t slope;
        real_t value = point_loss(code, acc, y[i], &slope);
        f[i] = acc;
        g[i] = slope / real_t(n);
        atomicAdd(loss, value / real_t(n));
    }
}

// One warp per coordinate j: gw_j = sum_i X_ij g_i over the rows of X^T (int8, row-major (d, n)), then the
// coupled weight-decay update of u_j and v_j.
extern "C" __global__ void diag_update(const signed char* XT, const real_t* g, int n, int d, int L, real_t lr,
                                       real_t wd, real_t* u, real_t* v, const real_t* loss,
                                       const long long* diverged) {
    // the forward kernel has finished (same stream): a non-finite loss of this step leaves theta as it was,
    // as the oracle does
    if (*diverged >= 0 || !isfinite(*loss)) return;
    long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
    int lane = threadIdx.x % warpSize;
    if (warp >= d) return;
    const signed char* col = XT + (size_t)warp * n;
    real_t acc = real_t(0);
    for (int i = lane; i < n; i += warpSize) acc += real_t(col[i]) * g[i];
    for (int offset = warpSize / 2; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) {
        real_t uj = u[warp], vj = v[warp];
        real_t du = real_t(L) * ipow(uj, L - 1) * acc;
        real_t dv = -real_t(L) * ipow(vj, L - 1) * acc;
        u[warp] = uj - lr * (du + wd * uj);
        v[warp] = vj - lr * (dv + wd * vj);
    }
}

// Outputs on a split whose inputs are exact in int8 (row-major (n, d)): f = X w, one block per sample.
// Other inputs (a real-valued probe set) are multiplied by cuBLAS from Python.
extern "C" __global__ void diag_outputs(const signed char* X, const real_t* w, int n, int d, real_t* f) {
    __shared__ real_t shared[32];
    int i = blockIdx.x;
    const signed char* row = X + (size_t)i * d;
    real_t acc = real_t(0);
    for (int j = threadIdx.x; j < d; j += blockDim.x) acc += real_t(row[j]) * w[j];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) f[i] = acc;
}

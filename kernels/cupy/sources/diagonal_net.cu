// Diagonal linear net, w = u^L - v^L, f = X w, on +-1 data stored as int8 (twin of
// kernels/numba/diagonal_net.py). One run; the loss accumulator and the divergence flag are per run
// (B = 1) so that finish_step of common.cuh applies unchanged.

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

// One block per sample i: f_i = <X_i, w>, then its loss and slope g_i = dloss/df / n; the mean loss is
// accumulated into loss[0]. Skipped once the run has diverged.
extern "C" __global__ void diag_forward_loss(const signed char* X, const real_t* w, const real_t* y, int n, int d,
                                             int code, real_t* f, real_t* g, real_t* loss, const int* diverged) {
    __shared__ real_t shared[32];
    if (diverged[0] >= 0) return;
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

// One warp per coordinate j: gw_j = sum_i X_ij g_i over the rows of X^T (int8, (d, n)), then the coupled
// weight-decay update of u_j and v_j.
extern "C" __global__ void diag_update(const signed char* XT, const real_t* g, int n, int d, int L, real_t lr,
                                       real_t wd, real_t* u, real_t* v, const real_t* loss, const int* diverged) {
    // the forward kernel has finished (same stream): a non-finite loss of this step leaves theta as it was,
    // as the oracle does
    if (diverged[0] >= 0 || !isfinite(loss[0])) return;
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
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

// Outputs on any split (int8 or real inputs are converted by the caller to int8 here): f = X w.
extern "C" __global__ void diag_outputs(const signed char* X, const real_t* w, int n, int d, real_t* f) {
    __shared__ real_t shared[32];
    int i = blockIdx.x;
    const signed char* row = X + (size_t)i * d;
    real_t acc = real_t(0);
    for (int j = threadIdx.x; j < d; j += blockDim.x) acc += real_t(row[j]) * w[j];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) f[i] = acc;
}

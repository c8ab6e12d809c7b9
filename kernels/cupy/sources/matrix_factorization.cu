// Matrix factorization W = U U^T - V V^T for completion, observed entries only (twin of
// kernels/numba/matrix_factorization.py). The kernels are written for B runs at once, run b = blockIdx.y
// reading the b-th (d, d) slices of U, V, row b of g and slot b of lr, wd, loss and diverged; every array
// so indexed must therefore hold B runs when launched with grid y = B. The engines (kernels/cupy/engines.py)
// launch one run at a time with grid y = 1 and pointers to run b's slices and slots. A step is two
// launches plus finish_step, replayed from a CUDA graph.

// One warp per observation k of run b: f = <U_i, U_j> - <V_i, V_j>; g[b, k] = dloss/df (not divided by n);
// the mean loss accumulates into loss[b].
extern "C" __global__ void mc_slopes(const real_t* U, const real_t* V, const int* rows, const int* cols,
                                     const real_t* y, int n, int d, int code, real_t* g, real_t* loss,
                                     const long long* diverged) {
    int b = blockIdx.y;
    if (diverged[b] >= 0) return;
    int k = (blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
    int lane = threadIdx.x % warpSize;
    if (k >= n) return;
    const real_t* Ub = U + (size_t)b * d * d;
    const real_t* Vb = V + (size_t)b * d * d;
    const real_t* Ui = Ub + (size_t)rows[k] * d;
    const real_t* Uj = Ub + (size_t)cols[k] * d;
    const real_t* Vi = Vb + (size_t)rows[k] * d;
    const real_t* Vj = Vb + (size_t)cols[k] * d;
    real_t acc = real_t(0);
    for (int r = lane; r < d; r += warpSize) acc += Ui[r] * Uj[r] - Vi[r] * Vj[r];
    for (int offset = warpSize / 2; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) {
        real_t slope;
        real_t value = point_loss(code, acc, y[k], &slope);
        g[(size_t)b * n + k] = slope;
        atomicAdd(loss + b, value / real_t(n));
    }
}

// One block per row a of run b, threads over columns r: U2_a = keep_b U_a - c_b sum_e g_e U_{nb(e)} and
// V2_a = keep_b V_a + c_b sum_e g_e V_{nb(e)}, over the symmetric adjacency (indptr, neighbor, obs) of the
// observations; keep_b = 1 - lr_b wd_b, c_b = lr_b / n. A gather, so no atomics.
extern "C" __global__ void mc_update(const real_t* U, const real_t* V, real_t* U2, real_t* V2, const int* indptr,
                                     const int* neighbor, const int* obs, const real_t* g, int n, int d,
                                     const real_t* lr, const real_t* wd, const real_t* loss,
                                     const long long* diverged) {
    int b = blockIdx.y, a = blockIdx.x;
    size_t base = (size_t)b * d * d;
    bool frozen = diverged[b] >= 0 || !isfinite(loss[b]);  // copied unchanged, so the buffers stay in step
    real_t keep = real_t(1) - lr[b] * wd[b], c = lr[b] / real_t(n);
    const real_t* gb = g + (size_t)b * n;
    for (int r = threadIdx.x; r < d; r += blockDim.x) {
        real_t tu = U[base + (size_t)a * d + r], tv = V[base + (size_t)a * d + r];
        if (!frozen) {
            tu *= keep;
            tv *= keep;
            for (int e = indptr[a]; e < indptr[a + 1]; ++e) {
                real_t s = c * gb[obs[e]];
                tu -= s * U[base + (size_t)neighbor[e] * d + r];
                tv += s * V[base + (size_t)neighbor[e] * d + r];
            }
        }
        U2[base + (size_t)a * d + r] = tu;
        V2[base + (size_t)a * d + r] = tv;
    }
}

// Outputs of run b on index pairs (rows, cols): one warp per pair.
extern "C" __global__ void mc_outputs(const real_t* U, const real_t* V, const int* rows, const int* cols, int n,
                                      int d, real_t* f) {
    int b = blockIdx.y;
    int k = (blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
    int lane = threadIdx.x % warpSize;
    if (k >= n) return;
    const real_t* Ub = U + (size_t)b * d * d;
    const real_t* Vb = V + (size_t)b * d * d;
    real_t acc = real_t(0);
    for (int r = lane; r < d; r += warpSize)
        acc += Ub[(size_t)rows[k] * d + r] * Ub[(size_t)cols[k] * d + r]
             - Vb[(size_t)rows[k] * d + r] * Vb[(size_t)cols[k] * d + r];
    for (int offset = warpSize / 2; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) f[(size_t)b * n + k] = acc;
}

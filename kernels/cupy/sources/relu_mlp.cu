// ReLU MLP pieces that cuBLAS does not cover (twin of kernels/numba/relu_mlp.py): the two-hot first layer
// as a gather and its backward as a scatter-add, the cross-entropy slopes, and the fused update. The dense
// layers are cuBLAS GEMMs issued from Python. One run per launch: the caller passes run b's arrays and its
// slots of the per-run bookkeeping arrays (pointers at offset b); no kernel here reads blockIdx.y.
//
// The first layer is kept transposed on the device, W1T = W1^T of shape (D, h) row-major, as the numba
// engine keeps it: the hot column a of W1 is the contiguous row a of W1T, so the gather reads and the
// scatter adds along contiguous rows.

// Z1[i, :] = W1T[a_i, :] + W1T[b_i, :] + b1, A1 = relu(Z1). One block per sample, threads over the h units.
extern "C" __global__ void mlp_gather(const real_t* W1T, const real_t* b1, const int* ia, const int* ib, int n,
                                      int h, real_t* Z1, real_t* A1) {
    int i = blockIdx.x;
    const real_t* ra = W1T + (size_t)ia[i] * h;
    const real_t* rb = W1T + (size_t)ib[i] * h;
    for (int r = threadIdx.x; r < h; r += blockDim.x) {
        real_t z = ra[r] + rb[r] + b1[r];
        Z1[(size_t)i * h + r] = z;
        A1[(size_t)i * h + r] = z > real_t(0) ? z : real_t(0);
    }
}

// dW1T[a_i, :] += delta_i and dW1T[b_i, :] += delta_i (dW1T zeroed by the caller); db1 = sum_i delta_i is a
// CuPy reduction. Atomics: several samples share a hot column.
extern "C" __global__ void mlp_scatter(const real_t* delta, const int* ia, const int* ib, int n, int h,
                                       real_t* dW1T) {
    int i = blockIdx.x;
    real_t* ra = dW1T + (size_t)ia[i] * h;
    real_t* rb = dW1T + (size_t)ib[i] * h;
    for (int r = threadIdx.x; r < h; r += blockDim.x) {
        real_t v = delta[(size_t)i * h + r];
        atomicAdd(ra + r, v);
        atomicAdd(rb + r, v);
    }
}

// One block per sample (F row-major (n, C)): G_i = (softmax(F_i) - onehot(y_i)) / n, and the mean
// cross-entropy into *loss. Skipped once the run has diverged (G is then left as it was).
extern "C" __global__ void ce_slopes(const real_t* F, const long long* y, int n, int C, real_t* G, real_t* loss,
                                     const long long* diverged) {
    __shared__ real_t shared[32];
    if (*diverged >= 0) return;
    int i = blockIdx.x;
    const real_t* row = F + (size_t)i * C;
    real_t mx = neg_inf();
    for (int c = threadIdx.x; c < C; c += blockDim.x) mx = fmax(mx, row[c]);
    mx = block_max(mx, shared);
    real_t total = real_t(0);
    for (int c = threadIdx.x; c < C; c += blockDim.x) total += exp(row[c] - mx);
    total = block_sum(total, shared);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        real_t p = exp(row[c] - mx) / total;
        G[(size_t)i * C + c] = (p - (c == y[i] ? real_t(1) : real_t(0))) / real_t(n);
    }
    if (threadIdx.x == 0) atomicAdd(loss, (log(total) + mx - row[y[i]]) / real_t(n));
}

// p <- p - lr (g + wd p) for every element (the one update rule), skipped when this step's loss is not
// finite or the run has diverged.
extern "C" __global__ void sgd_update(real_t* p, const real_t* g, size_t size, real_t lr, real_t wd,
                                      const real_t* loss, const long long* diverged) {
    if (*diverged >= 0 || !isfinite(*loss)) return;
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < size) p[k] -= lr * (g[k] + wd * p[k]);
}

// ReLU MLP pieces that cuBLAS does not cover (twin of kernels/numba/relu_mlp.py): the two-hot first layer
// as a gather and its backward as a scatter-add, the cross-entropy slopes, and the fused update. The dense
// layers are cuBLAS GEMMs issued from Python.

// Z1[i, :] = W1[:, a_i] + W1[:, b_i] + b1 (W1 is (h, D) row-major), A1 = relu(Z1). One block per sample.
extern "C" __global__ void mlp_gather(const real_t* W1, const real_t* b1, const int* ia, const int* ib, int n,
                                      int h, int D, real_t* Z1, real_t* A1) {
    int i = blockIdx.x;
    for (int r = threadIdx.x; r < h; r += blockDim.x) {
        real_t z = W1[(size_t)r * D + ia[i]] + W1[(size_t)r * D + ib[i]] + b1[r];
        Z1[(size_t)i * h + r] = z;
        A1[(size_t)i * h + r] = z > real_t(0) ? z : real_t(0);
    }
}

// dW1[:, a_i] += delta_i and dW1[:, b_i] += delta_i (dW1 zeroed by the caller); db1 = sum_i delta_i is a
// cuBLAS/CuPy reduction. Atomics: several samples share a column.
extern "C" __global__ void mlp_scatter(const real_t* delta, const int* ia, const int* ib, int n, int h, int D,
                                       real_t* dW1) {
    int i = blockIdx.x;
    for (int r = threadIdx.x; r < h; r += blockDim.x) {
        real_t v = delta[(size_t)i * h + r];
        atomicAdd(dW1 + (size_t)r * D + ia[i], v);
        atomicAdd(dW1 + (size_t)r * D + ib[i], v);
    }
}

// One block per sample: G_i = (softmax(F_i) - onehot(y_i)) / n, and the mean cross-entropy into loss[0].
extern "C" __global__ void ce_slopes(const real_t* F, const long long* y, int n, int C, real_t* G, real_t* loss) {
    __shared__ real_t shared[32];
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

// p <- p - lr (g + wd p) for every element (the one update rule), skipped once the run has diverged.
extern "C" __global__ void sgd_update(real_t* p, const real_t* g, size_t size, real_t lr, real_t wd,
                                      const real_t* loss, const int* diverged) {
    if (diverged[0] >= 0 || !isfinite(loss[0])) return;
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < size) p[k] -= lr * (g[k] + wd * p[k]);
}

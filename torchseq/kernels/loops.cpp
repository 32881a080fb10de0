// The recurrent kernels' per-step loops in C++ (the LSTM's forward, inference and backward loops, the
// GRU's forward): what torchseq/kernels/lstm.py and gru.py run in Python otherwise, on the same buffers,
// step for step the same arithmetic. Built on first use by torchseq/kernels/native.py.
//
// Why: at small sizes a step costs its dispatches, not its arithmetic. In Python a forward step is one
// GEMM and six pointwise ops, each a dispatch of a few microseconds; here it is the GEMM and one pass over
// the step's B x H elements that computes every gate, c_t and h_t together, on raw pointers (no tensor is
// made per step). The GEMM (StepGemm) is a register-tiled loop of our own for small batches, oneDNN's on
// its packed layout for large weights, else MKL's packed sgemm, else at::addmm_ (each choice measured
// where it is made, below). The pointwise pass is vectorised by the compiler (OpenMP SIMD with glibc's
// vector exp/tanh). Threads split the batch rows once per loop (for_row_blocks).
//
// Gate order in the buffers is the kernel's o, i, f, g (see kernel_order in lstm.py).

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

extern "C" {
// glibc's vector variants (libmvec) of exp and tanh, declared for OpenMP SIMD without -ffast-math.
#pragma omp declare simd notinbranch
double exp(double) noexcept;
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
double tanh(double) noexcept;
#pragma omp declare simd notinbranch
float tanhf(float) noexcept;
}

// MKL's packed GEMM (float32), when the torch build exports it (the x86 builds with MKL do): the weight
// is packed once per call of a loop and every step's GEMM reads it packed, instead of MKL repacking
// it inside each sgemm. Weak symbols: on a build without them they are null and at::addmm_ runs.
extern "C" {
size_t SGEMM_PACK_GET_SIZE(const char*, const int*, const int*, const int*) __attribute__((weak));
void SGEMM_PACK(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                const int*, float*) __attribute__((weak));
void SGEMM_COMPUTE(const char*, const char*, const int*, const int*, const int*, const float*, const int*,
                   const float*, const int*, const float*, float*, const int*) __attribute__((weak));
}

namespace {

// out (B, N) += rows (B, K) @ operand (K, N), all row-major, on raw pointers: a register tile of RB rows
// by NB columns (NB: 8 vectors of 512 bits for one row, 4 for four rows, so that the accumulators stay
// in registers), each operand row loaded once per tile and used by all RB rows. Plain C++ that the
// compiler vectorises (OpenMP SIMD), for float and double alike.
template <typename T, int RB, int NB>
inline void gemm_tile(T* __restrict out, const T* __restrict rows, const T* __restrict operand, int64_t k_size,
                      int64_t n_size, int64_t n0) {
  T acc[RB][NB];
  for (int r = 0; r < RB; ++r) {
#pragma omp simd
    for (int j = 0; j < NB; ++j) acc[r][j] = out[r * n_size + n0 + j];
  }
  for (int64_t k = 0; k < k_size; ++k) {
    const T* w = operand + k * n_size + n0;
    for (int r = 0; r < RB; ++r) {
      const T x = rows[r * k_size + k];
#pragma omp simd
      for (int j = 0; j < NB; ++j) acc[r][j] += x * w[j];
    }
  }
  for (int r = 0; r < RB; ++r) {
#pragma omp simd
    for (int j = 0; j < NB; ++j) out[r * n_size + n0 + j] = acc[r][j];
  }
}

template <typename T, int RB>
void gemm_rows(T* out, const T* rows, const T* operand, int64_t k_size, int64_t n_size) {
  constexpr int NB = 64 / sizeof(T) * (RB == 1 ? 8 : 4);
  int64_t n0 = 0;
  for (; n0 + NB <= n_size; n0 += NB) gemm_tile<T, RB, NB>(out, rows, operand, k_size, n_size, n0);
  for (; n0 < n_size; ++n0) {  // the columns left over when N is not a multiple of NB
    for (int r = 0; r < RB; ++r) {
      T sum = out[r * n_size + n0];
      for (int64_t k = 0; k < k_size; ++k) sum += rows[r * k_size + k] * operand[k * n_size + n0];
      out[r * n_size + n0] = sum;
    }
  }
}

template <typename T>
void small_gemm(T* out, const T* rows, const T* operand, int64_t batch, int64_t k_size, int64_t n_size) {
  int64_t b = 0;
  for (; b + 4 <= batch; b += 4) gemm_rows<T, 4>(out + b * n_size, rows + b * k_size, operand, k_size, n_size);
  for (; b < batch; ++b) gemm_rows<T, 1>(out + b * n_size, rows + b * k_size, operand, k_size, n_size);
}

// Where a step's GEMM runs small_gemm rather than MKL: up to 16 rows, or up to 32 rows of an operand of
// at most 64K elements (256 KB in float32, held in L2 while every 4-row tile passes over it). Measured
// on an AMD EPYC (AVX-512), one thread, float32, against MKL's packed sgemm: 2.4 vs 4.2 us at
// (B, K, N) = (1, 128, 512), 2.4 vs 5.2 at (1, 512, 128), 6.2 vs 6.3 at (16, 64, 256), 5.7 vs 6.5 at
// (16, 256, 64); a forward loop of 28 steps at (32, 128, 512) 1.66 vs 1.96 ms; at 64 rows MKL wins
// (3.31 vs 3.51 ms for that loop).
bool runs_small_gemm(int64_t rows, int64_t k_size, int64_t n_size) {
  return rows <= 16 || (rows <= 32 && k_size * n_size <= 65536) || k_size <= 32;
}

// The operand of a step's GEMM arrives either as W^T (K, N), strided, or as the weight (N, K) in
// oneDNN's packed layout (torch.ops.mkldnn._reorder_linear_weight; float32, large weights, laid out by
// RecurrentProduct in base.py), which torch marks as an mkldnn tensor.
int64_t operand_rows(const at::Tensor& operand) { return operand.size(operand.is_mkldnn() ? 1 : 0); }
int64_t operand_columns(const at::Tensor& operand) { return operand.size(operand.is_mkldnn() ? 0 : 1); }

// torch's oneDNN linear on a packed weight: (B, K) rows -> a new (B, N) product.
at::Tensor onednn_product(const at::Tensor& rows, const at::Tensor& packed) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>)>();
  return op.call(rows, packed, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
}

// out (B, N) += rows (B, K) @ operand (K, N), all row-major, for every step of a loop: small_gemm for a
// few rows; else oneDNN on its packed weight when the operand is one (the fastest GEMM at large sizes:
// 1.2 vs 1.5 ms for MKL's sgemm at (64, 512, 2048) on an AMD EPYC, one thread); else MKL's packed sgemm
// (float32, where torch exports it; the operand packed once per loop; in MKL's column-major terms
// out^T (N x B) += operand^T (N x K) rows^T (K x B), operand^T the packed "A"); else at::addmm_.
class StepGemm {
 public:
  StepGemm(const at::Tensor& operand, int64_t batch)
      : batch_(batch), k_(operand_rows(operand)), n_(operand_columns(operand)) {
    if (operand.is_mkldnn()) {
      onednn_ = operand;
      return;
    }
    operand_ = operand.contiguous();
    small_ = runs_small_gemm(batch_, k_, n_);
    if (small_) return;
    const bool packable = operand_.scalar_type() == at::kFloat && SGEMM_PACK != nullptr &&
                          SGEMM_COMPUTE != nullptr && SGEMM_PACK_GET_SIZE != nullptr;
    if (!packable) return;
    m_ = static_cast<int>(n_);
    n_mkl_ = static_cast<int>(batch_);
    k_mkl_ = static_cast<int>(k_);
    const size_t bytes = SGEMM_PACK_GET_SIZE("A", &m_, &n_mkl_, &k_mkl_);
    packed_.resize(bytes / sizeof(float) + 1);
    const float one = 1.0f;
    SGEMM_PACK("A", "N", &m_, &n_mkl_, &k_mkl_, &one, operand_.data_ptr<float>(), &m_, packed_.data());
  }

  template <typename T>
  void accumulate(T* out, const T* rows) const {
    if constexpr (std::is_same_v<T, float>) {
      if (onednn_.defined()) {
        const at::Tensor product = onednn_product(
            at::from_blob(const_cast<float*>(rows), {batch_, k_}, onednn_.options().layout(at::kStrided)), onednn_);
        const float* __restrict p = product.const_data_ptr<float>();
#pragma omp simd
        for (int64_t e = 0; e < batch_ * n_; ++e) out[e] += p[e];
        return;
      }
    }
    TORCH_CHECK(!onednn_.defined(), "StepGemm: a oneDNN-packed operand needs float32 rows");
    if (small_) {
      small_gemm<T>(out, rows, operand_.data_ptr<T>(), batch_, k_, n_);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (!packed_.empty()) {
        const float one = 1.0f;
        SGEMM_COMPUTE("P", "N", &m_, &n_mkl_, &k_mkl_, packed_.data(), &m_, rows, &k_mkl_, &one, out, &m_);
        return;
      }
    }
    const auto options = operand_.options();
    at::from_blob(out, {batch_, n_}, options).addmm_(at::from_blob(const_cast<T*>(rows), {batch_, k_}, options),
                                                      operand_);
  }

 private:
  at::Tensor operand_, onednn_;
  int64_t batch_, k_, n_;
  bool small_ = false;
  std::vector<float> packed_;
  int m_ = 0, n_mkl_ = 0, k_mkl_ = 0;
};

inline double exp_of(double x) { return exp(x); }
inline float exp_of(float x) { return expf(x); }
inline double tanh_of(double x) { return tanh(x); }
inline float tanh_of(float x) { return tanhf(x); }

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}

// One forward step's pointwise part for every row: the activations a (B, 4, H) become the gates in
// place, then c_t = f c_{t-1} + i g and h_t = o tanh(c_t); tanh(c_t) is kept when tanh_c is not null.
template <typename T>
void forward_pointwise(T* __restrict a, const T* __restrict c_prev, T* __restrict c, T* __restrict h,
                       T* __restrict tanh_c, int64_t batch, int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    T* o = a + b * 4 * hidden;
    T* i = o + hidden;
    T* f = i + hidden;
    T* g = f + hidden;
    const int64_t row = b * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T o_j = sigmoid(o[j]), i_j = sigmoid(i[j]), f_j = sigmoid(f[j]), g_j = tanh_of(g[j]);
      const T c_j = f_j * c_prev[row + j] + i_j * g_j;
      const T tanh_c_j = tanh_of(c_j);
      o[j] = o_j;
      i[j] = i_j;
      f[j] = f_j;
      g[j] = g_j;
      c[row + j] = c_j;
      h[row + j] = o_j * tanh_c_j;
      if (tanh_c != nullptr) tanh_c[row + j] = tanh_c_j;
    }
  }
}

// One backward step's pointwise part: dc_t += dh_t (dc_per_dm), the i, f, g factors times dc_t and the
// o factor times dh_t (the factors become dA_t), and dc_{t-1} += dc_t f_t.
template <typename T>
void backward_pointwise(const T* __restrict dh, T* __restrict dc, T* __restrict dc_prev,
                        const T* __restrict dc_per_dm, T* __restrict factors, const T* __restrict f,
                        int64_t batch, int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    T* d_o = factors + b * 4 * hidden;
    T* d_i = d_o + hidden;
    T* d_f = d_i + hidden;
    T* d_g = d_f + hidden;
    const int64_t row = b * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T dm = dh[row + j];
      const T dc_j = dc[row + j] + dm * dc_per_dm[row + j];
      dc[row + j] = dc_j;
      d_o[j] *= dm;
      d_i[j] *= dc_j;
      d_f[j] *= dc_j;
      d_g[j] *= dc_j;
      dc_prev[row + j] += dc_j * f[row + j];
    }
  }
}

// One GRU step (reset_after) for every row: a = [a_r, a_z, s_n] (B, 3, H) gets r, z in place (s_n kept),
// n = tanh(x_n + r s_n), h_t = n + z (h_{t-1} - n).
template <typename T>
void gru_forward_pointwise(T* __restrict a, const T* __restrict x_n, const T* __restrict h_prev,
                           T* __restrict n, T* __restrict h, int64_t batch, int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    T* r = a + b * 3 * hidden;
    T* z = r + hidden;
    const T* s_n = z + hidden;
    const T* x = x_n + b * 3 * hidden;
    const int64_t row = b * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T r_j = sigmoid(r[j]), z_j = sigmoid(z[j]);
      const T n_j = tanh_of(x[j] + r_j * s_n[j]);
      r[j] = r_j;
      z[j] = z_j;
      n[row + j] = n_j;
      h[row + j] = n_j + z_j * (h_prev[row + j] - n_j);
    }
  }
}

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), name, ": expected a contiguous CPU tensor");
}

// Threads split a loop by batch rows, once: in these recurrences row b's step t reads only row b's
// state, so each thread runs every step on its own rows (its own StepGemm, the weight packed by that
// thread) and the threads meet once, at the end, not at every step. A split needs more than
// kMinRowsPerThread rows; torch's thread count (torch.set_num_threads) bounds the threads. A oneDNN-packed
// operand (a large weight) is not split: oneDNN's GEMM on all rows with every thread beats one GEMM per
// half (AMD EPYC, 2 threads, LSTM T 100, B 64, H 512 inference: about 0.61 ms a step on 64 rows against
// 0.65-0.7 ms on 32 rows each).
constexpr int64_t kMinRowsPerThread = 8;

template <typename F>
void for_row_blocks(int64_t batch, const at::Tensor& operand, const F& run) {
  if (operand.is_mkldnn()) {
    run(int64_t{0}, batch);
    return;
  }
  at::parallel_for(0, batch, kMinRowsPerThread, run);
}

}  // namespace

// pre (T, B, 4H): x W_ih^T + b, becomes the gates. h_first, c_first (B, H): the initial state.
// operand: W_hh^T (H, 4H). hs, cs (T, B, H) receive h_t and c_t; tanh_cs (T, B, H) tanh(c_t) when keep.
void lstm_forward_loop(at::Tensor pre, at::Tensor h_first, at::Tensor c_first, at::Tensor operand,
                       at::Tensor hs, at::Tensor cs, at::Tensor tanh_cs, bool keep) {
  for (auto* t : {&pre, &h_first, &c_first, &hs, &cs, &tanh_cs}) check_float(*t, "lstm_forward_loop");
  const int64_t steps = pre.size(0), batch = pre.size(1), hidden = c_first.size(1);
  TORCH_CHECK(pre.size(2) == 4 * hidden && operand_rows(operand) == h_first.size(1) &&
                  operand_columns(operand) == 4 * hidden,
              "lstm_forward_loop: expected pre (T, B, 4H) and operand (H, 4H)");
  at::NoGradGuard no_grad;
  const at::Tensor weight = operand.is_mkldnn() ? operand : operand.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "lstm_forward_loop", [&] {
    // Step t's rows by pointer arithmetic: a select per tensor and step would cost a dispatch each.
    const int64_t gates = batch * 4 * hidden, cells = batch * hidden;
    for_row_blocks(batch, weight, [&](int64_t first, int64_t end) {
      const StepGemm recurrent(weight, end - first);
      scalar_t* a = pre.data_ptr<scalar_t>() + first * 4 * hidden;
      scalar_t* h = hs.data_ptr<scalar_t>() + first * hidden;
      scalar_t* c = cs.data_ptr<scalar_t>() + first * hidden;
      scalar_t* tanh_c = keep ? tanh_cs.data_ptr<scalar_t>() + first * hidden : nullptr;
      const scalar_t* h_prev = h_first.data_ptr<scalar_t>() + first * hidden;
      const scalar_t* c_prev = c_first.data_ptr<scalar_t>() + first * hidden;
      for (int64_t t = 0; t < steps; ++t) {
        recurrent.accumulate(a, h_prev);  // a_t = pre_t + h_{t-1} W_hh^T
        forward_pointwise<scalar_t>(a, c_prev, c, h, tanh_c, end - first, hidden);
        h_prev = h;
        c_prev = c;
        a += gates;
        h += cells;
        c += cells;
        if (tanh_c != nullptr) tanh_c += cells;
      }
    });
  });
}

// Inference: the input projection inside the loop. a_t = b + x_t W_ih^T + h_{t-1} W_hh^T is summed in a
// (B, 4H) scratch that stays in cache, instead of a (T, B, 4H) buffer written by one GEMM before the loop
// and read back by it; c_t lives in two alternating rows. x (T, B, I); input_operand: W_ih^T (I, 4H), or
// W_ih oneDNN-packed with W_hh; bias (4H) or undefined; operand: W_hh^T (H, 4H) or W_hh oneDNN-packed.
// hs (T, B, H) receives h_t, c_last (B, H) c_T.
void lstm_inference_loop(at::Tensor x, at::Tensor h_first, at::Tensor c_first, at::Tensor input_operand,
                         std::optional<at::Tensor> bias, at::Tensor operand, at::Tensor hs, at::Tensor c_last) {
  for (auto* t : {&x, &h_first, &c_first, &hs, &c_last}) check_float(*t, "lstm_inference_loop");
  if (!input_operand.is_mkldnn()) check_float(input_operand, "lstm_inference_loop");
  const int64_t steps = x.size(0), batch = x.size(1), inputs = x.size(2), hidden = c_first.size(1);
  // A packed input weight with an unpacked recurrent one would run oneDNN's threads inside each
  // thread's block of rows (for_row_blocks splits by the recurrent operand).
  TORCH_CHECK(!input_operand.is_mkldnn() || operand.is_mkldnn(),
              "lstm_inference_loop: a oneDNN-packed W_ih needs a oneDNN-packed W_hh");
  TORCH_CHECK(operand_rows(input_operand) == inputs && operand_columns(input_operand) == 4 * hidden &&
                  operand_rows(operand) == hidden && operand_columns(operand) == 4 * hidden &&
                  (!bias.has_value() || bias->numel() == 4 * hidden),
              "lstm_inference_loop: expected W_ih^T (I, 4H), W_hh^T (H, 4H) and a bias of 4H");
  at::NoGradGuard no_grad;
  const at::Tensor weight = operand.is_mkldnn() ? operand : operand.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::zeros({4 * hidden}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_inference_loop", [&] {
    const int64_t cells = batch * hidden;
    for_row_blocks(batch, weight, [&](int64_t first, int64_t end) {
      const int64_t rows = end - first;
      const StepGemm input(input_operand, rows), recurrent(weight, rows);
      std::vector<scalar_t> a(rows * 4 * hidden), c_rows(2 * rows * hidden);
      const scalar_t* const bias_row = b.data_ptr<scalar_t>();
      const scalar_t* x_t = x.data_ptr<scalar_t>() + first * inputs;
      scalar_t* h = hs.data_ptr<scalar_t>() + first * hidden;
      const scalar_t* h_prev = h_first.data_ptr<scalar_t>() + first * hidden;
      const scalar_t* c_prev = c_first.data_ptr<scalar_t>() + first * hidden;
      for (int64_t t = 0; t < steps; ++t) {
        for (int64_t r = 0; r < rows; ++r) std::copy(bias_row, bias_row + 4 * hidden, a.data() + r * 4 * hidden);
        input.accumulate(a.data(), x_t);      // + x_t W_ih^T
        recurrent.accumulate(a.data(), h_prev);  // + h_{t-1} W_hh^T
        scalar_t* c = c_rows.data() + (t % 2) * rows * hidden;
        forward_pointwise<scalar_t>(a.data(), c_prev, c, h, nullptr, rows, hidden);
        h_prev = h;
        c_prev = c;
        x_t += batch * inputs;
        h += cells;
      }
      std::copy(c_prev, c_prev + rows * hidden, c_last.data_ptr<scalar_t>() + first * hidden);
    });
  });
}

// dhs, dcs (T + 1, B, H): row t + 1 holds the incoming gradient of step t, row 0 that of h_0 / c_0; the
// loop accumulates into them. factors (T, B, 4, H) become dA. dc_per_dm, f (T, B, H). operand: W_hh (4H, H).
void lstm_backward_loop(at::Tensor dhs, at::Tensor dcs, at::Tensor factors, at::Tensor dc_per_dm, at::Tensor f,
                        at::Tensor operand) {
  for (auto* t : {&dhs, &dcs, &factors, &dc_per_dm, &f}) check_float(*t, "lstm_backward_loop");
  const int64_t steps = factors.size(0), batch = factors.size(1), hidden = factors.size(3);
  TORCH_CHECK(operand_rows(operand) == 4 * hidden && operand_columns(operand) == hidden && dhs.size(0) == steps + 1,
              "lstm_backward_loop: expected factors (T, B, 4, H), operand (4H, H) and dhs (T + 1, B, H)");
  at::NoGradGuard no_grad;
  const at::Tensor weight = operand.is_mkldnn() ? operand : operand.contiguous();
  AT_DISPATCH_FLOATING_TYPES(factors.scalar_type(), "lstm_backward_loop", [&] {
    const int64_t gates = batch * 4 * hidden, cells = batch * hidden;
    for_row_blocks(batch, weight, [&](int64_t first, int64_t end) {
      const StepGemm recurrent(weight, end - first);
      scalar_t* const dh = dhs.data_ptr<scalar_t>() + first * hidden;
      scalar_t* const dc = dcs.data_ptr<scalar_t>() + first * hidden;
      scalar_t* const d_a = factors.data_ptr<scalar_t>() + first * 4 * hidden;
      const scalar_t* const per_dm = dc_per_dm.data_ptr<scalar_t>() + first * hidden;
      const scalar_t* const forget = f.data_ptr<scalar_t>() + first * hidden;
      for (int64_t t = steps - 1; t >= 0; --t) {
        backward_pointwise<scalar_t>(dh + (t + 1) * cells, dc + (t + 1) * cells, dc + t * cells,
                                     per_dm + t * cells, d_a + t * gates, forget + t * cells, end - first,
                                     hidden);
        recurrent.accumulate(dh + t * cells, d_a + t * gates);  // dh_{t-1} += dA_t W_hh
      }
    });
  });
}

// gates (T, B, 3H): [x_r, x_z, b_hn], becomes [r, z, s_n]. projected (T, B, 3H): x W_ih^T + b, read for
// x_n. h_first (B, H). operand: W_hh^T (H, 3H). hs (T, B, H); ns (T or 1, B, H) receives n (every step
// when keep, else the last one's row is overwritten).
void gru_forward_loop(at::Tensor gates, at::Tensor projected, at::Tensor h_first, at::Tensor operand,
                      at::Tensor hs, at::Tensor ns, bool keep) {
  for (auto* t : {&gates, &projected, &h_first, &hs, &ns}) check_float(*t, "gru_forward_loop");
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = h_first.size(1);
  TORCH_CHECK(gates.size(2) == 3 * hidden && operand_rows(operand) == hidden && operand_columns(operand) == 3 * hidden,
              "gru_forward_loop: expected gates (T, B, 3H) and operand (H, 3H)");
  at::NoGradGuard no_grad;
  const at::Tensor weight = operand.is_mkldnn() ? operand : operand.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_forward_loop", [&] {
    const int64_t width = batch * 3 * hidden, cells = batch * hidden;
    for_row_blocks(batch, weight, [&](int64_t first, int64_t end) {
      const StepGemm recurrent(weight, end - first);
      scalar_t* a = gates.data_ptr<scalar_t>() + first * 3 * hidden;
      const scalar_t* x_n = projected.data_ptr<scalar_t>() + first * 3 * hidden + 2 * hidden;
      scalar_t* h = hs.data_ptr<scalar_t>() + first * hidden;
      scalar_t* n = ns.data_ptr<scalar_t>() + first * hidden;
      const scalar_t* h_prev = h_first.data_ptr<scalar_t>() + first * hidden;
      for (int64_t t = 0; t < steps; ++t) {
        recurrent.accumulate(a, h_prev);  // [a_r, a_z, s_n] = [x_r, x_z, b_hn] + h_{t-1} W_hh^T
        gru_forward_pointwise<scalar_t>(a, x_n, h_prev, n, h, end - first, hidden);
        h_prev = h;
        a += width;
        x_n += width;
        h += cells;
        if (keep) n += cells;
      }
    });
  });
}

void register_step_loops(pybind11::module_& m);  // step_loops.cpp: the compiled generic fast path's loops

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_forward_loop", &lstm_forward_loop, "The LSTM kernel's forward loop");
  m.def("lstm_inference_loop", &lstm_inference_loop, "The LSTM kernel's inference loop (projection inside)");
  m.def("lstm_backward_loop", &lstm_backward_loop, "The LSTM kernel's backward loop");
  m.def("gru_forward_loop", &gru_forward_loop, "The GRU kernel's forward loop (reset_after)");
  register_step_loops(m);
}

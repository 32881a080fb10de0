// The loops of the compiled generic fast path (torchseq/kernels/compiled_steps.py): a cell's forward and
// backward step, compiled ahead of time by AOTInductor into two packages, called once per timestep from
// C++. Per step this costs the compiled kernels (the step's GEMMs and one or two fused loops over its
// elements) and no Python, TorchScript or autograd bookkeeping.
//
// Built into the same module as loops.cpp (it registers its class there). Where torch has no AOTInductor
// package loader (before 2.6), the class is absent and the Python side keeps the TorchScript loops.

#include <torch/extension.h>

#include <string>
#include <vector>

#if __has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

namespace {

// Every step's saved tensors (what its backward reads), kept on the C++ side between forward and
// backward: handing T lists of tensors to Python and back would cost more than the steps themselves.
struct SavedSteps {
  std::vector<std::vector<at::Tensor>> steps;
};

class CompiledStepLoops {
 public:
  // gradient_kinds, per parameter: -1 when the backward step returns its gradient summed so far; else
  // it returns the step's two GEMM factors of a gradient Σ_t a_t b_t, and the bits say: 1, the gradient
  // is the transpose of that sum; 2, the step returns a_tᵀ; 4, it returns b_tᵀ.
  CompiledStepLoops(const std::string& forward_package, const std::string& backward_package,
                    std::vector<int64_t> gradient_kinds)
      : forward_(forward_package, "model", /*run_single_threaded=*/true),
        backward_(backward_package, "model", /*run_single_threaded=*/true),
        gradient_kinds_(std::move(gradient_kinds)) {}

  // pre (T, B, G) contiguous, the state parts and the parameters, as the forward step was compiled for
  // → each state part stacked over time (T, B, ·) and, if keep, every step's saved tensors.
  std::tuple<std::vector<at::Tensor>, SavedSteps> forward(const at::Tensor& pre, std::vector<at::Tensor> state,
                                                          const std::vector<at::Tensor>& parameters, bool keep) {
    at::NoGradGuard no_grad;
    const size_t count = state.size();
    const int64_t steps = pre.size(0);
    std::vector<std::vector<at::Tensor>> sequences(count);
    for (auto& sequence : sequences) sequence.reserve(steps);
    SavedSteps saved;
    if (keep) saved.steps.reserve(steps);
    std::vector<at::Tensor> inputs;
    for (int64_t t = 0; t < steps; ++t) {
      inputs.clear();
      inputs.push_back(pre.select(0, t));
      inputs.insert(inputs.end(), state.begin(), state.end());
      inputs.insert(inputs.end(), parameters.begin(), parameters.end());
      std::vector<at::Tensor> outputs = forward_.run(inputs);  // new state parts, then the saved tensors
      for (size_t k = 0; k < count; ++k) {  // the next step was compiled for a contiguous state
        state[k] = outputs[k].contiguous();
        sequences[k].push_back(state[k]);
      }
      if (keep) saved.steps.emplace_back(std::make_move_iterator(outputs.begin() + count),
                                         std::make_move_iterator(outputs.end()));
    }
    std::vector<at::Tensor> stacked;
    for (auto& sequence : sequences) stacked.push_back(at::stack(sequence));
    return {stacked, std::move(saved)};
  }

  // The saved steps, the gradients of the stacked state parts (T, B, ·) contiguous, the parameters
  // → d pre (T, B, G), the initial state's gradient and each parameter's. The backward step was compiled
  // with the incoming gradient's sum and the summed parameter gradients' accumulation inside it.
  std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> backward(
      SavedSteps& saved, const std::vector<at::Tensor>& d_sequences, const std::vector<at::Tensor>& parameters) {
    at::NoGradGuard no_grad;
    const size_t count = d_sequences.size();
    const int64_t steps = static_cast<int64_t>(saved.steps.size());
    TORCH_CHECK(steps > 0, "compiled step loops: backward after a forward that kept no steps");
    TORCH_CHECK(parameters.size() == gradient_kinds_.size(), "compiled step loops: expected ",
                gradient_kinds_.size(), " parameters, got ", parameters.size());
    std::vector<at::Tensor> carried, summed, d_pre(steps), inputs;
    std::vector<std::vector<at::Tensor>> left(parameters.size()), right(parameters.size());
    for (const auto& d : d_sequences) carried.push_back(at::zeros_like(d.select(0, 0)));
    for (size_t p = 0; p < parameters.size(); ++p) {
      if (gradient_kinds_[p] < 0) summed.push_back(at::zeros_like(parameters[p]));
      else left[p].reserve(steps), right[p].reserve(steps);
    }
    for (int64_t t = steps - 1; t >= 0; --t) {
      inputs = saved.steps[t];  // kept (references, not copies) for a second backward (retain_graph)
      for (const auto& d : d_sequences) inputs.push_back(d.select(0, t));
      inputs.insert(inputs.end(), carried.begin(), carried.end());
      inputs.insert(inputs.end(), summed.begin(), summed.end());
      inputs.insert(inputs.end(), parameters.begin(), parameters.end());  // what the step recomputes from
      std::vector<at::Tensor> outputs = backward_.run(inputs);  // d pre_t, d state_{t-1}, then per parameter
      d_pre[t] = outputs[0];
      for (size_t k = 0; k < count; ++k) carried[k] = outputs[1 + k].contiguous();
      size_t next = 1 + count, sum = 0;
      for (size_t p = 0; p < parameters.size(); ++p) {
        if (gradient_kinds_[p] < 0) {
          summed[sum++] = outputs[next++];
        } else {
          left[p].push_back(outputs[next++]);
          right[p].push_back(outputs[next++]);
        }
      }
    }
    std::vector<at::Tensor> gradients;
    size_t sum = 0;
    for (size_t p = 0; p < parameters.size(); ++p) {
      if (gradient_kinds_[p] < 0) {
        gradients.push_back(summed[sum++]);
        continue;
      }
      const int64_t kind = gradient_kinds_[p];  // Σ_t a_t b_t as one GEMM, over the steps' factors
      at::Tensor a = kind & 2 ? at::cat(left[p], 0).t() : at::cat(left[p], 1);
      at::Tensor b = kind & 4 ? at::cat(right[p], 1).t() : at::cat(right[p], 0);
      gradients.push_back(kind & 1 ? at::mm(b.t(), a.t()) : at::mm(a, b));
    }
    return {at::stack(d_pre), carried, gradients};
  }

 private:
  torch::inductor::AOTIModelPackageLoader forward_, backward_;
  std::vector<int64_t> gradient_kinds_;
};

}  // namespace

void register_step_loops(pybind11::module_& m) {
  pybind11::class_<SavedSteps>(m, "SavedSteps");
  pybind11::class_<CompiledStepLoops>(m, "CompiledStepLoops")
      .def(pybind11::init<const std::string&, const std::string&, std::vector<int64_t>>())
      .def("forward", &CompiledStepLoops::forward)
      .def("backward", &CompiledStepLoops::backward);
}

#else

void register_step_loops(pybind11::module_&) {}

#endif

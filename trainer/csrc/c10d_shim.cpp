// A C ABI over PyTorch's distributed engine (c10d) for cvrl's Rust trainer.
//
// What it holds: rendezvous through a c10d::TCPStore, a process group (Gloo for CPU tensors,
// NCCL for CUDA tensors when built with USE_C10D_NCCL), the collectives the trainer uses
// (all-reduce sum, all-gather of equal shapes, broadcast, barrier), two differentiable
// collectives written as torch::autograd::Function (all-gather and all-reduce with gradient),
// a way to give a parameter a zero gradient so every rank buckets the same tensors,
// c10d::Reducer, DDP's engine, which averages gradients bucket by bucket during backward, and
// a heartbeat through the store, so that a rank whose collective failed can tell which peer
// stopped answering.
//
// Why C++: c10d has no C API and tch exposes none of it; the Rust side (trainer/src/dist/ffi.rs)
// declares exactly the functions below.
//
// Conventions at the boundary:
// - A tensor is tch's handle, a heap `at::Tensor*` (torch-sys: `typedef torch::Tensor *tensor`).
//   Tensors returned through an out-pointer are `new at::Tensor(...)`, owned by the caller
//   (tch's `Tensor::from_ptr` takes them over and deletes them on drop).
// - Every function that can fail returns nullptr on success or a malloc'd, NUL-terminated
//   message that the caller frees with cvrl_c10d_free_string. No C++ exception crosses into
//   Rust: each entry point catches everything.
// - A group is reference counted (c10::intrusive_ptr). The caller owns one reference, dropped
//   by cvrl_c10d_group_free; autograd nodes that need the group in backward hold their own, so
//   a graph outliving the Rust handle still has a live group.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Milliseconds since the Unix epoch: a heartbeat's value, comparable between hosts whose
// clocks are synchronised (NTP keeps them within milliseconds; the diagnosis also looks at
// whether a value moves, which needs no common clock).
int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string heartbeat_key(int rank) { return "cvrl/heartbeat/" + std::to_string(rank); }

// A client connection of its own to the TCPStore at host:port. `timeout` bounds the
// connection attempts and waits for keys, but not every read: a client's handshake with a
// server whose process is stopped (SIGSTOP, a hung host) blocks in recv for good. Hence
// the heartbeat thread below is never joined unboundedly, and readers go through
// `bounded`.
c10::intrusive_ptr<c10d::Store> store_client(const std::string& host, uint16_t port,
                                              std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.isServer = false;
  opts.waitWorkers = false;
  opts.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(host, opts);
}

// `work()`'s result if it comes within `timeout`, else an exception. The work runs on a
// thread of its own, detached, which owns everything it touches: if the store never answers,
// that thread stays blocked until the process exits, and nothing else waits for it.
template <typename T>
T bounded(std::function<T()> work, std::chrono::milliseconds timeout, const std::string& what) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> result = promise->get_future();
  std::thread([promise, work = std::move(work)] {
    try {
      promise->set_value(work());
    } catch (...) {
      promise->set_exception(std::current_exception());
    }
  }).detach();
  if (result.wait_for(timeout) != std::future_status::ready) {
    throw std::runtime_error(what + " did not answer within " + std::to_string(timeout.count()) +
                             " ms");
  }
  return result.get();
}

// Writes this rank's wall-clock time under cvrl/heartbeat/<rank> every `kInterval`, from a
// thread and a store connection of its own: the training thread may be blocked in a
// collective, and the group's own store connection belongs to the backends. A value written
// once `stopping` is set carries the prefix "stopping ": this rank is leaving on an error of
// its own and is not a lost peer. A failed write (the store's host is gone) is retried at the
// next beat; the readers notice the store is gone themselves.
class Heartbeat {
 public:
  static constexpr std::chrono::milliseconds kInterval{1000};

  Heartbeat(const std::string& host, uint16_t port, int rank, std::chrono::milliseconds timeout)
      : state_(std::make_shared<State>()), timeout_(timeout) {
    state_->store = store_client(host, port, timeout);
    state_->key = heartbeat_key(rank);
    beat(*state_);  // before the backends' rendezvous: once it completes, every rank has a value
    thread_ = std::thread([state = state_] { run(*state); });
  }

  // Stops the thread; if a write of its hangs on a stopped store past the timeout, leaves it
  // behind (it owns its state) rather than hang this rank's exit.
  ~Heartbeat() {
    bool finished = false;
    {
      std::unique_lock<std::mutex> lock(state_->mutex);
      state_->stop = true;
      state_->wake.notify_all();
      finished = state_->wake.wait_for(lock, timeout_ + kInterval,
                                       [this] { return state_->finished; });
    }
    if (finished) {
      thread_.join();
    } else {
      thread_.detach();
    }
  }

  // From now on this rank's heartbeat says it is stopping on its own; written at once.
  void mark_stopping() {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
    state_->wake.notify_all();
  }

 private:
  struct State {
    c10::intrusive_ptr<c10d::Store> store;
    std::string key;
    std::mutex mutex;
    std::condition_variable wake;
    bool stop = false;
    bool stopping = false;
    bool finished = false;
  };

  static void beat(State& state) {
    bool stopping = false;
    {
      std::lock_guard<std::mutex> lock(state.mutex);
      stopping = state.stopping;
    }
    const std::string value = (stopping ? "stopping " : "") + std::to_string(now_ms());
    state.store->set(state.key, std::vector<uint8_t>(value.begin(), value.end()));
  }

  static void run(State& state) {
    std::unique_lock<std::mutex> lock(state.mutex);
    bool was_stopping = state.stopping;
    while (!state.stop) {
      state.wake.wait_for(lock, kInterval,
                          [&] { return state.stop || state.stopping != was_stopping; });
      if (state.stop) {
        break;
      }
      was_stopping = state.stopping;
      lock.unlock();
      try {
        beat(state);
      } catch (...) {
      }
      lock.lock();
    }
    state.finished = true;
    state.wake.notify_all();
  }

  std::shared_ptr<State> state_;
  std::chrono::milliseconds timeout_;
  std::thread thread_;
};

// One rank's membership of a group: the store it met the others through, a Gloo backend, and
// an NCCL backend when one was asked for. A CustomClassHolder so an autograd context can keep
// it alive in an IValue capsule.
struct Group : torch::CustomClassHolder {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo;
  c10::intrusive_ptr<c10d::Backend> nccl;  // null unless created with NCCL
  int rank = 0;
  int size = 1;
  // Where the store listens, for the heartbeat readers' own connections.
  std::string host;
  uint16_t port = 0;
  std::unique_ptr<Heartbeat> heartbeat;
  // The ProcessGroup front end over the same backends, which c10d::Reducer takes; made on
  // first use.
  c10::intrusive_ptr<c10d::ProcessGroup> front;
  std::once_flag front_once;

  c10::intrusive_ptr<c10d::ProcessGroup> process_group() {
    std::call_once(front_once, [this] {
      auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
      pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
      if (nccl) {
        pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
      }
      pg->setDefaultBackend(nccl ? c10d::ProcessGroup::BackendType::NCCL
                                 : c10d::ProcessGroup::BackendType::GLOO);
      front = pg;
    });
    return front;
  }

  // The backend for a tensor's device: NCCL for CUDA, Gloo for the CPU.
  c10d::Backend& backend_for(const at::Tensor& t) {
    if (t.is_cuda()) {
      if (!nccl) {
        throw std::runtime_error(
            "tensor is on CUDA but this process group has no NCCL backend (created for the "
            "CPU, or the trainer was built without libtorch_cuda)");
      }
      return *nccl;
    }
    if (!t.device().is_cpu()) {
      throw std::runtime_error("collectives take CPU or CUDA tensors, got " +
                               t.device().str());
    }
    return *gloo;
  }

  void all_reduce_sum_(at::Tensor& t) {
    // Gloo and NCCL reduce dense contiguous buffers; reduce a copy otherwise and write back.
    at::Tensor buf = t.is_contiguous() ? t : t.contiguous();
    std::vector<at::Tensor> tensors{buf};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    backend_for(buf).allreduce(tensors, opts)->wait();
    if (!buf.is_same(t)) {
      t.copy_(buf);
    }
  }

  // Every rank's `t` (all of the same shape), concatenated along dim 0 in rank order.
  at::Tensor all_gather(const at::Tensor& t) {
    at::Tensor input = t.contiguous();
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < size; ++r) {
      outputs[0].push_back(at::empty_like(input));
    }
    std::vector<at::Tensor> inputs{input};
    backend_for(input).allgather(outputs, inputs)->wait();
    if (input.dim() == 0) {
      return at::stack(outputs[0], 0);
    }
    return at::cat(outputs[0], 0);
  }

  void broadcast_(at::Tensor& t, int root) {
    at::Tensor buf = t.is_contiguous() ? t : t.contiguous();
    std::vector<at::Tensor> tensors{buf};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    backend_for(buf).broadcast(tensors, opts)->wait();
    if (!buf.is_same(t)) {
      t.copy_(buf);
    }
  }

  // A host-side barrier, always on Gloo: it orders processes, not device streams.
  void barrier() { gloo->barrier()->wait(); }
};

c10::intrusive_ptr<Group> group_of(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<Group>(ctx->saved_data["group"].toCapsule());
}

void save_group(AutogradContext* ctx, const c10::intrusive_ptr<Group>& group) {
  c10::intrusive_ptr<torch::CustomClassHolder> holder = group;
  ctx->saved_data["group"] = c10::IValue::make_capsule(std::move(holder));
}

// All-gather with gradient, the pattern of torch.distributed.nn.functional.all_gather: the
// output is every rank's rows; each rank's loss reaches every rank's rows, so the gradient of
// this rank's input is the sum over ranks of the incoming gradient's slice for this rank.
struct AllGatherWithGrad : torch::autograd::Function<AllGatherWithGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<Group> group) {
    ctx->saved_data["rows"] = x.dim() == 0 ? int64_t{1} : x.size(0);
    ctx->saved_data["scalar"] = x.dim() == 0;
    save_group(ctx, group);
    return group->all_gather(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto group = group_of(ctx);
    const int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor grad = grads[0].contiguous().clone();
    group->all_reduce_sum_(grad);
    at::Tensor mine = grad.narrow(0, group->rank * rows, rows);
    if (ctx->saved_data["scalar"].toBool()) {
      mine = mine.squeeze(0);
    }
    return {mine, at::Tensor()};
  }
};

// All-reduce (sum) with gradient: every rank's output is the sum of every rank's input, so
// the gradient of this rank's input is the sum over ranks of the incoming gradients.
struct AllReduceWithGrad : torch::autograd::Function<AllReduceWithGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<Group> group) {
    save_group(ctx, group);
    at::Tensor y = x.clone(at::MemoryFormat::Contiguous);
    group->all_reduce_sum_(y);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto group = group_of(ctx);
    at::Tensor grad = grads[0].contiguous().clone();
    group->all_reduce_sum_(grad);
    return {grad, at::Tensor()};
  }
};

char* copy_message(const char* what) {
  const size_t len = std::strlen(what);
  char* out = static_cast<char*>(std::malloc(len + 1));
  if (out != nullptr) {
    std::memcpy(out, what, len + 1);
  }
  return out;
}

// Runs `body`, turning any exception into a message for Rust. c10::Error's what() carries a
// C++ backtrace; the message alone is what a user can act on.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception in the c10d shim");
  }
}

Group* checked(Group* group) {
  if (group == nullptr) {
    throw std::invalid_argument("null process group");
  }
  return group;
}

at::Tensor& checked(at::Tensor* t) {
  if (t == nullptr || !t->defined()) {
    throw std::invalid_argument("null or undefined tensor");
  }
  return *t;
}

// Gloo's network device: the named interface if one is given (GLOO_SOCKET_IFNAME), the
// master's address when it is a loopback one (every rank on this host), else the address
// this host's name resolves to, as torch's own default does.
std::shared_ptr<gloo::transport::Device> gloo_device(const std::string& host,
                                                     const std::string& iface) {
  if (!iface.empty()) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(iface);
  }
  if (host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1") {
    return c10d::ProcessGroupGloo::createDeviceForHostname(host);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// A c10d::Reducer and the group it reduces over (kept alive as long as the reducer).
struct Reducer {
  c10::intrusive_ptr<Group> group;
  std::unique_ptr<c10d::Reducer> reducer;
};

std::vector<at::Tensor> tensor_list(at::Tensor* const* tensors, size_t n) {
  if (n > 0 && tensors == nullptr) {
    throw std::invalid_argument("null tensor list");
  }
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(checked(tensors[i]));
  }
  return out;
}

}  // namespace

extern "C" {

void cvrl_c10d_free_string(char* s) { std::free(s); }

// 1 when this library was compiled with the NCCL backend.
int cvrl_c10d_has_nccl() {
#ifdef USE_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// Meets the other ranks at host:port (rank 0 serves the store there) and builds the group.
// Blocks until all `size` ranks have joined, or fails after `timeout_ms`, which is also the
// limit of every later collective.
char* cvrl_c10d_group_new(const char* host, uint16_t port, int rank, int size,
                          int64_t timeout_ms, const char* gloo_iface, int with_nccl,
                          Group** out) {
  return guarded([&] {
    if (host == nullptr || out == nullptr) {
      throw std::invalid_argument("null host or output pointer");
    }
    if (size < 1 || rank < 0 || rank >= size) {
      throw std::invalid_argument("rank " + std::to_string(rank) + " is outside a world of " +
                                  std::to_string(size));
    }
#ifndef USE_C10D_NCCL
    if (with_nccl != 0) {
      throw std::runtime_error(
          "NCCL asked for, but the trainer was built without libtorch_cuda (see "
          "trainer/build.rs)");
    }
#endif
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions store_opts;
    store_opts.port = port;
    store_opts.isServer = rank == 0;
    store_opts.numWorkers = static_cast<size_t>(size);
    store_opts.waitWorkers = true;
    store_opts.timeout = timeout;

    auto group = c10::make_intrusive<Group>();
    group->rank = rank;
    group->size = size;
    group->host = host;
    group->port = port;
    group->store = c10::make_intrusive<c10d::TCPStore>(group->host, store_opts);
    // A beat's write waits at most a few seconds, so that leaving the group (which joins the
    // heartbeat thread) never waits long on a store whose host hangs.
    group->heartbeat = std::make_unique<Heartbeat>(
        group->host, port, rank, std::min(timeout, std::chrono::milliseconds(5000)));

    auto gloo_opts = c10d::ProcessGroupGloo::Options::create(timeout);
    gloo_opts->devices.push_back(
        gloo_device(host, gloo_iface == nullptr ? std::string() : std::string(gloo_iface)));
    group->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", group->store), rank, size, gloo_opts);
#ifdef USE_C10D_NCCL
    if (with_nccl != 0) {
      auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
      nccl_opts->timeout = timeout;
      group->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("nccl", group->store), rank, size, nccl_opts);
    }
#endif
    *out = group.release();
  });
}

// Drops the caller's reference; the group lives on while an autograd graph still needs it.
void cvrl_c10d_group_free(Group* group) {
  if (group != nullptr) {
    // Reclaiming takes over the caller's reference; letting it go out of scope drops it.
    // Destructors of c10d backends join their threads and do not throw on a dead peer.
    try {
      auto owned = c10::intrusive_ptr<Group>::reclaim(group);
    } catch (...) {
    }
  }
}

char* cvrl_c10d_all_reduce_sum(Group* group, at::Tensor* t) {
  return guarded([&] { checked(group)->all_reduce_sum_(checked(t)); });
}

char* cvrl_c10d_all_gather(Group* group, const at::Tensor* t, at::Tensor** out) {
  return guarded([&] {
    at::Tensor gathered = checked(group)->all_gather(checked(const_cast<at::Tensor*>(t)));
    *out = new at::Tensor(std::move(gathered));
  });
}

char* cvrl_c10d_broadcast(Group* group, at::Tensor* t, int root) {
  return guarded([&] {
    Group* g = checked(group);
    if (root < 0 || root >= g->size) {
      throw std::invalid_argument("broadcast root " + std::to_string(root) +
                                  " is outside a world of " + std::to_string(g->size));
    }
    g->broadcast_(checked(t), root);
  });
}

char* cvrl_c10d_barrier(Group* group) {
  return guarded([&] { checked(group)->barrier(); });
}

// Every rank's last heartbeat, read through a new store connection within `timeout_ms`:
// out_ms[r] is rank r's wall-clock time at its last beat (ms since the Unix epoch) and
// out_stopping[r] is 1 when rank r said it is stopping on an error of its own. `n` must be
// the world size. Fails when the store does not answer within the timeout.
char* cvrl_c10d_heartbeats(Group* group, int64_t timeout_ms, int64_t* out_ms,
                           int* out_stopping, size_t n) {
  return guarded([&] {
    Group* g = checked(group);
    if (out_ms == nullptr || out_stopping == nullptr || n != static_cast<size_t>(g->size)) {
      throw std::invalid_argument("heartbeats need two arrays of the world size");
    }
    const std::chrono::milliseconds timeout(timeout_ms);
    std::vector<std::string> keys;
    for (int r = 0; r < g->size; ++r) {
      keys.push_back(heartbeat_key(r));
    }
    const std::string host = g->host;
    const uint16_t port = g->port;
    std::vector<std::vector<uint8_t>> values = bounded<std::vector<std::vector<uint8_t>>>(
        [=] { return store_client(host, port, timeout)->multiGet(keys); }, timeout,
        "the store at " + host + ":" + std::to_string(port));
    const std::string prefix = "stopping ";
    for (size_t r = 0; r < n; ++r) {
      std::string v(values.at(r).begin(), values.at(r).end());
      out_stopping[r] = v.rfind(prefix, 0) == 0 ? 1 : 0;
      if (out_stopping[r] != 0) {
        v = v.substr(prefix.size());
      }
      out_ms[r] = std::stoll(v);
    }
  });
}

// From now on this rank's heartbeat says it is stopping on an error of its own, so that the
// other ranks do not take its silence after it exits for a lost peer.
char* cvrl_c10d_mark_stopping(Group* group) {
  return guarded([&] { checked(group)->heartbeat->mark_stopping(); });
}

char* cvrl_c10d_all_gather_with_grad(Group* group, const at::Tensor* t, at::Tensor** out) {
  return guarded([&] {
    c10::intrusive_ptr<Group> g = c10::intrusive_ptr<Group>::unsafe_reclaim_from_nonowning(
        checked(group));
    at::Tensor y = AllGatherWithGrad::apply(checked(const_cast<at::Tensor*>(t)), g);
    *out = new at::Tensor(std::move(y));
  });
}

char* cvrl_c10d_all_reduce_with_grad(Group* group, const at::Tensor* t, at::Tensor** out) {
  return guarded([&] {
    c10::intrusive_ptr<Group> g = c10::intrusive_ptr<Group>::unsafe_reclaim_from_nonowning(
        checked(group));
    at::Tensor y = AllReduceWithGrad::apply(checked(const_cast<at::Tensor*>(t)), g);
    *out = new at::Tensor(std::move(y));
  });
}

// DDP's gradient averaging: hooks on the gradient accumulators of `params` (their order is
// the bucket order: put the parameters whose gradients are ready first, the last layers,
// first), buckets of `bucket_bytes` (the first of 1 MiB, as DDP), each all-reduced and
// divided by the world size as soon as all its gradients are ready, while backward goes on.
char* cvrl_c10d_reducer_new(Group* group, at::Tensor* const* params, size_t n,
                            int64_t bucket_bytes, Reducer** out) {
  return guarded([&] {
    if (out == nullptr) {
      throw std::invalid_argument("null output pointer");
    }
    auto g = c10::intrusive_ptr<Group>::unsafe_reclaim_from_nonowning(checked(group));
    std::vector<at::Tensor> tensors = tensor_list(params, n);
    constexpr int64_t first_bucket = c10d::kDefaultFirstBucketBytes;
    std::vector<bool> sparse(tensors.size(), false);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        tensors, {static_cast<size_t>(first_bucket), static_cast<size_t>(bucket_bytes)}, sparse);
    auto holder = std::make_unique<Reducer>();
    holder->group = g;
    holder->reducer = std::make_unique<c10d::Reducer>(
        tensors, buckets, g->process_group(), sparse, bucket_bytes,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
        std::unordered_map<size_t, std::string>{}, first_bucket,
        /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
        std::vector<int64_t>{});
    *out = holder.release();
  });
}

// Arms the reducer for the next backward of `outputs` (the loss). The first call after a
// backward also rebuilds the buckets once in the order gradients became ready (a broadcast
// from rank 0, as DDP does before its second forward).
char* cvrl_c10d_reducer_prepare(Reducer* reducer, at::Tensor* const* outputs, size_t n) {
  return guarded([&] {
    if (reducer == nullptr) {
      throw std::invalid_argument("null reducer");
    }
    std::vector<at::Tensor> tensors = tensor_list(outputs, n);
    reducer->reducer->rebuild_buckets();
    reducer->reducer->prepare_for_forward();
    reducer->reducer->prepare_for_backward(tensors);
  });
}

void cvrl_c10d_reducer_free(Reducer* reducer) {
  // ~Reducer may throw (noexcept(false)); nothing can be done about it here.
  try {
    delete reducer;
  } catch (...) {
  }
}

// Gives `param` a zero gradient of its own shape if it has none, so that every rank reduces
// the same list of tensors even where one rank's backward did not reach a parameter.
char* cvrl_c10d_define_grad(at::Tensor* param) {
  return guarded([&] {
    at::Tensor& p = checked(param);
    if (!p.grad().defined()) {
      p.mutable_grad() = at::zeros_like(p, at::MemoryFormat::Contiguous);
    }
  });
}

}  // extern "C"

"""One run's training step as a CUDA graph: forward, loss, backward and SGD in one replay.

A LeNet step on MNIST launches about 400 small kernels; eager PyTorch spends far longer issuing
them from Python than the GPU spends running them. Captured once as a CUDA graph (Nvidia,
"CUDA Graphs"; PyTorch's ``torch.cuda.graph``, whole-network capture), a step is one
``replay()``: the batch is copied into the graph's static input buffers, the learning rate into
a device scalar, and the graph runs every kernel of the step with no Python in between.

What the capture needs, and how it is met:

* **Static shapes and addresses.** The graph reads its inputs from ``x`` / ``y`` (one batch
  shape; a batch of another shape, e.g. a short last batch, takes the eager step) and writes
  the loss terms into ``last`` and adds them to ``sums``, device tensors read only at log and
  epoch boundaries: no per-step synchronisation with the GPU's compute.
* **A ring of device-side input copies.** FFCV's batches live in pinned host slots that its
  worker thread refills (from the CPU, which no CUDA stream orders) as soon as the trainer asks
  for a later batch, so an asynchronous copy must be complete before ``step`` returns. The copy
  goes on a stream of its own into one of ``RING`` device staging buffers, and the host waits
  for that copy alone (an event), never behind the queued training steps; the compute stream
  waits for the same event, copies staging -> static inputs and replays. A staging buffer is
  refilled only after the compute stream has read it (a second event).
* **Warm-up on a side stream** (autograd and cuBLAS initialise lazily). Warm-up steps change the
  weights, buffers, momentum and the dropout generator: all are saved before and put back
  after, in place, so the graph's tensors keep their addresses and the run's trajectory is not
  shifted.
* **The learning rate as a device tensor.** ``torch.optim.SGD`` bakes a float lr into the
  kernels it launches; the captured update is ``sgd_update`` below, which reads ``lr`` from a
  tensor and keeps its momentum in the optimiser's own ``momentum_buffer`` slots (checkpoints
  and eager steps see the same state).
* **Dropout masks from the run's generator**, registered with the graph so each replay draws
  new masks (Philox offsets advance per replay).
* **Autocast without its weight-cast cache** (the cache's tensors would be freed after the
  capture).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


@torch.no_grad()
def sgd_update(opt: torch.optim.SGD, lr: torch.Tensor) -> None:
    """The step of ``torch.optim.SGD`` (dampening 0, Nesterov as configured) with ``lr`` read
    from a tensor, so a CUDA graph can replay it with a new rate:

        g = grad + wd * p;  buf = momentum * buf + g;  g = g + momentum * buf (Nesterov) or buf;
        p = p - lr * g

    Momentum buffers live in ``opt.state[p]["momentum_buffer"]``; a missing one starts at zero,
    which gives torch's first step (``buf = g``) exactly."""
    for group in opt.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        grads = [p.grad for p in params]
        wd, m = group["weight_decay"], group["momentum"]
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        if m:
            bufs = []
            for p in params:
                st = opt.state[p]
                if st.get("momentum_buffer") is None:
                    st["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(st["momentum_buffer"])
            torch._foreach_mul_(bufs, m)
            torch._foreach_add_(bufs, grads)
            grads = torch._foreach_add(grads, bufs, alpha=m) if group["nesterov"] else bufs
        torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clone()


class GraphedStep:
    """The step of one run, captured on its first batch of each shape it is given.

    ``body(x, y, n_in)`` is the run's step on static inputs: it returns the detached loss terms
    as a float32 (4,) tensor (loss, ce, oe term, correct). ``model``, ``opt`` and ``generator``
    are saved around the warm-up."""

    WARMUP = 2
    RING = 2

    def __init__(
        self,
        model: torch.nn.Module,
        opt: torch.optim.SGD,
        generator: torch.Generator | None,
        body: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        device: torch.device,
        channels_last: bool,
    ) -> None:
        self.model, self.opt, self.generator, self.body = model, opt, generator, body
        self.device, self.channels_last = device, channels_last
        self.lr = torch.zeros((), device=device)
        self.sums = torch.zeros(4, device=device)
        self.last = torch.zeros(4, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.shape: tuple | None = None

    def fits(self, n_in: int, n_total: int) -> bool:
        """True when a batch of these sizes can replay the graph (captured on first use)."""
        return self.shape is None or self.shape == (n_in, n_total)

    def step(self, x: torch.Tensor, y: torch.Tensor, xo: torch.Tensor | None, lr: float) -> None:
        n_in = x.shape[0]
        n_total = n_in + (0 if xo is None else xo.shape[0])
        if self.graph is None:
            self._allocate(x, n_in, n_total)
        self._load(x, y, xo, n_in)
        self.lr.fill_(lr)
        if self.graph is None:
            self._capture(n_in)
        self.graph.replay()

    def drain(self) -> tuple[list[float], list[float]]:
        """The summed and the last loss terms since the previous drain (one synchronisation)."""
        sums, last = torch.stack([self.sums, self.last]).cpu().tolist()
        self.sums.zero_()
        return sums, last

    # ---- capture

    def _allocate(self, x: torch.Tensor, n_in: int, n_total: int) -> None:
        self.shape = (n_in, n_total)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.x = torch.empty(
            (n_total, *x.shape[1:]), device=self.device, dtype=torch.float32
        ).contiguous(memory_format=fmt)
        self.y = torch.empty(n_in, device=self.device, dtype=torch.long)
        self.stage = [
            (torch.empty_like(self.x), torch.empty_like(self.y)) for _ in range(self.RING)
        ]
        self.copied = [torch.cuda.Event() for _ in range(self.RING)]
        self.consumed: list[torch.cuda.Event | None] = [None] * self.RING
        self.copy_stream = torch.cuda.Stream(self.device)
        self.loads = 0

    def _load(self, x, y, xo, n_in: int) -> None:
        """Host batch -> staging buffer (copy stream; the host waits for this copy only, so
        FFCV may refill its slot) -> static inputs (compute stream)."""
        k = self.loads % self.RING
        self.loads += 1
        sx, sy = self.stage[k]
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.copy_stream):
            if self.consumed[k] is not None:
                self.copy_stream.wait_event(self.consumed[k])
            sx[:n_in].copy_(x, non_blocking=True)
            if xo is not None:
                sx[n_in:].copy_(xo, non_blocking=True)
            sy.copy_(y.reshape(-1), non_blocking=True)
            self.copied[k].record(self.copy_stream)
        self.copied[k].synchronize()
        compute.wait_event(self.copied[k])
        self.x.copy_(sx)
        self.y.copy_(sy)
        done = torch.cuda.Event()
        done.record(compute)
        self.consumed[k] = done

    def _run_body(self, n_in: int) -> None:
        vals = self.body(self.x, self.y, n_in)
        self.last.copy_(vals)
        self.sums.add_(vals)

    def _capture(self, n_in: int) -> None:
        saved = self._save()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.opt.zero_grad(set_to_none=True)
                self._run_body(n_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._restore(saved)
        graph = torch.cuda.CUDAGraph()
        if self.generator is not None:
            graph.register_generator_state(self.generator)
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._run_body(n_in)
        self.graph = graph

    def _save(self) -> dict:
        return {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "momentum": {p: _clone(st.get("momentum_buffer")) for p, st in self.opt.state.items()},
            "rng": self.generator.get_state() if self.generator is not None else None,
            "sums": self.sums.clone(),
        }

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        for k, v in self.model.state_dict().items():
            v.copy_(saved["model"][k])
        for group in self.opt.param_groups:
            for p in group["params"]:
                buf = self.opt.state.get(p, {}).get("momentum_buffer")
                if buf is None:
                    continue
                before = saved["momentum"].get(p)
                buf.copy_(before) if before is not None else buf.zero_()
        if saved["rng"] is not None:
            self.generator.set_state(saved["rng"])
        self.sums.copy_(saved["sums"])

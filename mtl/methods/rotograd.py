"""rotograd: per-task rotations of the shared representation (Javaloy & Valera, "RotoGrad", ICLR 2022).

Variants (adrianjav/rotograd): ``rotate_only`` (RotateOnly), ``rotograd`` (RotoGrad: rotations +
gradient-magnitude homogenisation) and ``rotograd_norm`` (RotoGradNorm: rotations + GradNorm
weights), registered under those three names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mtl.errors import UserError
from mtl.methods.base import (METHODS, Method, StepInfo, check_choice, check_positive, make_optimizer,
                              seeded_generator)
from mtl.methods.gramian import check_finite, write_head_grads

VARIANTS = ("rotate_only", "rotograd", "rotograd_norm")


@dataclass
class RotoGradOptions:
    variant: str = field(default="rotograd", metadata={"help": "rotate_only | rotograd | rotograd_norm"})
    rotation_size: int = field(default=0, metadata={
        "help": "rotate the first N features of the representation (0 = all; taken from the first forward)"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer of rotations (and GradNorm weights)"})
    lr: float = field(default=1e-3, metadata={"help": "rotations' learning rate (README: smaller than the model's)"})
    gradnorm_lr: float = field(default=1e-3, metadata={"help": "GradNorm logits' learning rate (rotograd_norm)"})
    init: str = field(default="random", metadata={
        "help": "initial rotations: random (uniform on SO(n), the official geotorch init) | identity"})
    seed: int = field(default=0, metadata={"help": "seed of the random initial rotations"})
    burn_in: int = field(default=20, metadata={
        "help": "step at which the reference losses / gradient norms are re-taken (burn_in_period)"})
    alpha: float = field(default=1.0, metadata={"help": "GradNorm alpha of rotograd_norm"})
    normalize_losses: bool = field(default=False, metadata={
        "help": "heads get the gradient of L_k / L_k(t0) instead of L_k"})
    coop_after: int = field(default=-1, metadata={
        "help": "step from which cooperative mode is on: rotations also follow the task losses (-1: never)"})
    cache_rotations: bool = field(default=True, metadata={
        "help": "compute each rotation once per parameter update (geotorch 'cached')"})

    def __post_init__(self) -> None:
        check_choice("variant", self.variant, VARIANTS)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_positive("rotation_size", self.rotation_size, allow_zero=True)
        check_positive("lr", self.lr)
        check_positive("gradnorm_lr", self.gradnorm_lr)
        check_choice("init", self.init, ("random", "identity"))
        check_positive("alpha", self.alpha, allow_zero=True)


@dataclass
class RotateOnlyOptions(RotoGradOptions):
    variant: str = field(default="rotate_only", metadata={"help": "rotate_only | rotograd | rotograd_norm"})


@dataclass
class RotoGradNormOptions(RotoGradOptions):
    variant: str = field(default="rotograd_norm", metadata={"help": "rotate_only | rotograd | rotograd_norm"})


def rotate(z: Tensor, rotation: Tensor) -> Tensor:
    """R applied to the first r features (dim 1) of z: z_lo <- R z_lo (in z's dtype)."""
    size = rotation.shape[0]
    zt = z.movedim(1, -1)
    lo = zt[..., :size] @ rotation.T.to(zt.dtype)
    out = torch.cat([lo, zt[..., size:]], -1) if size < zt.shape[-1] else lo
    return out.movedim(-1, 1)


def rotate_back(g: Tensor, rotation: Tensor) -> Tensor:
    """R^T applied like ``rotate`` (a gradient w.r.t. R z becomes one w.r.t. z)."""
    return rotate(g, rotation.T)


def random_rotations(count: int, size: int, generator: torch.Generator) -> Tensor:
    """`count` rotations drawn uniformly (Haar) from SO(size): QR of a Gaussian, signs fixed, det +1."""
    q, r = torch.linalg.qr(torch.randn(count, size, size, generator=generator, dtype=torch.float64))
    q = q * r.diagonal(dim1=-2, dim2=-1).sign().unsqueeze(-2)
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q


def skew_of(params: Tensor) -> Tensor:
    """S = L - L^T from the strictly lower triangle L of `params` (geotorch ``Skew(lower=True)``)."""
    lower = params.tril(-1)
    return lower - lower.transpose(-2, -1)


@METHODS.register("rotograd")
class RotoGrad(Method):
    """Head k reads R_k z; R_k = B_k expm(L_k - L_k^T) (B_k the initial rotation) aligns task gradients.

    Javaloy & Valera, ICLR 2022; adrianjav/rotograd 0.1.6 ``rotograd.py``. The model calls
    ``adapt_representation(z, k)`` (forward uses R_k detached). In ``backward``, with g'_k the
    gradient w.r.t. R_k z and g_k = R_k^T g'_k the one w.r.t. z:

    * rotation loss sum_k ||R_k v - g'_k||^2 reduced as rotograd 0.1.6: summed over everything for
      vector features (B x d; its flatten leaves the batch in the sum), for feature maps (B x C x ...)
      summed per sample over channels and positions and averaged over the batch; v = mean_k of g_k
      rescaled to the norm of mean_k g_k; only the rotations receive it;
    * the representation receives sum_k c_k g_k: rotate_only c_k = 1; rotograd c_k = C / ||g_k||,
      C = sum_k a_k ||g_k||, a_k = the convergence ratios ||g_k|| / ||g_k(t0)|| normalised to sum 1;
      rotograd_norm c_k = w_k, GradNorm weights w = K softmax(s) trained on
      sum_k | w_k ||g_k|| - ||mean_j w_j g_j|| (Ltilde_k / mean Ltilde)^alpha |, Ltilde_k = L_k / L_k(t0);
    * heads get their own gradient (of L_k / L_k(t0) with ``normalize_losses``).

    t0 = first step, re-taken at ``burn_in``. Cooperative mode (rotograd <= 0.1.4 ``model.coop``;
    ``coop_after`` or ``coop(True)``): the forward uses R_k with gradient, so the rotations also
    descend the task losses. The rotations (``lr``) and GradNorm logits (``gradnorm_lr``) are stepped
    by the method's own optimizer. Works with one shared representation tensor (or one per task of
    equal shape), of any float dtype (parameters in float64 for float64 features, else float32).

    Parametrisation as the official (geotorch ``orthogonal``, triv expm): L_k is the strictly lower
    triangle of the parameter (a full A - A^T would move S twice as fast at the same learning rate),
    L_k starts at 0 and B_k is a random rotation (``init='random'``, seeded by ``seed``).
    """

    Options = RotoGradOptions
    sources = ("representation",)
    # Data-parallel (``parts.reducer``): each rank holds its rows of the global batch's representation
    # gradients (its local gradient over R); the norms are all-reduced sums of squares, the rotation
    # loss's gradient is summed over the ranks (each adds its rows' terms of the global loss), so the
    # rotations, weights and initial norms are those of one process on the global batch.

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self.register_parameter("skew", None)
        self.register_parameter("gn_logits", None)
        self.register_buffer("base", None)
        self.register_buffer("initial_losses", torch.ones(num_tasks, dtype=torch.float64))
        self.register_buffer("initial_norms", torch.ones(num_tasks, dtype=torch.float64))
        self._coop = False
        self._rotated: list[Tensor | None] = [None] * num_tasks
        self._cache: tuple[int, Tensor] | None = None
        self._reducer = None  # this step's data-parallel group (SharedParts.reducer)
        if self.options.rotation_size:
            self._materialize(self.options.rotation_size, torch.device("cpu"))

    # ---- parameters ----------------------------------------------------------------------------
    def _materialize(self, size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        dtype = torch.promote_types(dtype, torch.float32)  # float64 features: float64 rotations
        k = self.num_tasks
        base = random_rotations(k, size, seeded_generator(self.options.seed)) \
            if self.options.init == "random" else torch.eye(size, dtype=torch.float64).expand(k, size, size)
        self.base = base.to(device, dtype).contiguous()
        self.skew = nn.Parameter(torch.zeros(k, size, size, device=device, dtype=dtype))
        groups = [{"params": [self.skew], "lr": self.options.lr}]
        if self.options.variant == "rotograd_norm":
            self.gn_logits = nn.Parameter(torch.zeros(k, device=device, dtype=dtype))
            groups.append({"params": [self.gn_logits], "lr": self.options.gradnorm_lr})
        self._optimizer = make_optimizer(groups, self.options.optimizer, self.options.lr)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        skew = state_dict.get(prefix + "skew")
        if skew is not None and prefix + "base" not in state_dict:  # saved before the base existed:
            state_dict[prefix + "base"] = torch.eye(skew.shape[-1], dtype=skew.dtype).expand_as(skew).clone()
            state_dict[prefix + "skew"] = (skew - skew.transpose(-2, -1)).tril(-1)  # same S = A - A^T
        if self.skew is None and skew is not None:
            self._materialize(skew.shape[-1], self.initial_losses.device, skew.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def rotations(self, differentiable: bool = False) -> Tensor:
        """The K rotations B_k expm(S_k); detached ones are cached until the parameters change."""
        if differentiable:
            return self.base @ torch.linalg.matrix_exp(skew_of(self.skew))
        key = self.skew._version
        if not self.options.cache_rotations or self._cache is None or self._cache[0] != key \
                or self._cache[1].device != self.skew.device:
            with torch.no_grad():
                self._cache = (key, self.base @ torch.linalg.matrix_exp(skew_of(self.skew)))
        return self._cache[1]

    def _rotation(self, task: int, differentiable: bool) -> Tensor:
        if differentiable:
            return self.base[task] @ torch.linalg.matrix_exp(skew_of(self.skew[task]))
        return self.rotations()[task]

    def coop(self, mode: bool = True) -> None:
        """Switch cooperative mode on or off (like rotograd 0.1.4 ``model.coop``)."""
        self._coop = bool(mode)

    def _coop_on(self) -> bool:
        after = self.options.coop_after
        return self._coop or (after >= 0 and self.step_count >= after)

    # ---- forward hook --------------------------------------------------------------------------
    def adapt_representation(self, z: Tensor, task: int) -> Tensor:
        if self.skew is None:
            if z.dim() < 2:
                raise UserError("rotograd needs a representation with a feature dimension (dim 1)")
            self.to(z.device)
            self._materialize(z.shape[1], z.device, z.dtype)
        else:
            self._follow_device(z.device)
        rotated = rotate(z, self._rotation(task, differentiable=self._coop_on()))
        if rotated.requires_grad:
            self._rotated[task] = rotated
        return rotated

    # ---- backward ------------------------------------------------------------------------------
    def _backward(self, losses, parts, source):
        reps = parts.tensors("representation")
        if any(r is None for r in self._rotated):
            raise UserError("rotograd: the model must feed head k with method.adapt_representation(z, k)")
        rotated, self._rotated = self._rotated, [None] * self.num_tasks
        values = torch.stack([loss.detach() for loss in losses]).double()
        if self.step_count in (0, self.options.burn_in):
            self.initial_losses.copy_(values)
        coop = self._coop_on()
        extra = [self.skew] if coop else []
        self._reducer = parts.reducer
        world = parts.reducer.world_size if parts.reducer is not None else 1
        # the rows of the global batch's gradients (the local loss is the mean of a 1/world slice),
        # unscaled when fp16 scales the losses' gradients (parts.loss_scale)
        unscale = 1.0 / (world * parts.grad_scale)
        task_grads, head_grads, coop_grads = self._task_gradients(losses, rotated, parts, extra, unscale)
        rotation = self.rotations()
        grads = torch.stack([rotate_back(g, rotation[k]) for k, g in enumerate(task_grads)])
        self._rotation_loss(grads, task_grads).backward()
        coefficients = self._coefficients(grads, values / self.initial_losses)
        # back through this rank's graph at the local (x world, the step averages .grad) and loss scale
        shaped = [c * g * (world * parts.grad_scale) for c, g in zip(coefficients.tolist(), grads)]
        if len(reps) == 1:
            torch.autograd.backward(reps, [sum(shaped).to(reps[0].dtype)])
        else:
            torch.autograd.backward(reps, [g.to(z.dtype) for g, z in zip(shaped, reps)])
        scale = 1.0 / self.initial_losses if self.options.normalize_losses else torch.ones(self.num_tasks)
        write_head_grads(parts, head_grads, scale.cpu())  # local (averaged by the step), loss-scaled
        if coop:  # the task losses' gradients: this rank's share of the global batch's, unscaled
            self.skew.grad = self.skew.grad + sum(g[0] for g in coop_grads if g[0] is not None)
        if self._reducer is not None:  # each rank's terms of the global rotation loss (and coop share)
            self._reducer.sum_([self.skew.grad])
        self._step_own_optimizer()
        return StepInfo(coefficients.tolist(), "representation", "unweighted",
                        {"rotation_loss": self._last_rotation_loss})

    def _task_gradients(self, losses, rotated, parts, extra, unscale=1.0):
        """Per task: the gradient w.r.t. R_k z (times `unscale`: global rows, fp16 unscaled), the heads'
        gradients (as taken) and the `extra` gradients (times `unscale`). fp16 / data-parallel: a
        non-finite gradient on any rank raises NonFiniteGradients on every rank."""
        heads = list(parts.task_params)
        task_grads, head_grads, extra_grads = [], [], []
        for loss, r in zip(losses, rotated):
            grads = torch.autograd.grad(loss, [r] + heads + extra, retain_graph=True, allow_unused=True)
            g = torch.zeros_like(r) if grads[0] is None else grads[0].detach()
            g = g.to(torch.promote_types(g.dtype, torch.float32))  # norms and rotation loss in fp32+
            task_grads.append(g * unscale if unscale != 1.0 else g)
            head_grads.append(list(grads[1:1 + len(heads)]))
            extra_grads.append([e * unscale if e is not None and unscale != 1.0 else e
                                for e in grads[1 + len(heads):]])
        if parts.loss_scale is not None:
            check_finite([*task_grads, *(g for task in head_grads for g in task if g is not None)], parts.reducer)
        return task_grads, head_grads, extra_grads

    def _norms(self, flat: Tensor) -> Tensor:
        """Row norms of K x N rows of the global batch (data-parallel: all-reduced sums of squares)."""
        if self._reducer is None:
            return flat.norm(dim=1)
        squares = flat.pow(2).sum(1)
        self._reducer.sum_([squares])
        return squares.sqrt()

    def _rotation_loss(self, grads: Tensor, task_grads: list[Tensor]) -> Tensor:
        """sum_k ||R_k v - g'_k||^2, reduced as the official (class docstring); reaches the rotations only."""
        dtype = self.skew.dtype
        flat = grads.reshape(grads.shape[0], -1).to(dtype)
        mean = flat.mean(0)
        both = self._norms(torch.cat([flat, mean[None]]))
        norms, mean_norm = both[:-1, None].clamp_min(1e-15), both[-1]
        target = (flat * (mean_norm / norms)).mean(0).view_as(grads[0])
        rotations = self.rotations(differentiable=True)
        world = self._reducer.world_size if self._reducer is not None else 1
        loss = 0.0
        for k, g in enumerate(task_grads):
            squares = (rotate(target, rotations[k]) - g.to(dtype)).pow(2)
            # maps: the mean over the global batch of per-sample sums = this rank's mean / world + ...
            loss = loss + (squares.sum() if g.dim() == 2 else squares.flatten(1).sum(1).mean() / world)
        value = loss.detach().reshape(1).clone()
        if self._reducer is not None:
            self._reducer.sum_([value])
        self._last_rotation_loss = float(value)
        return loss

    def _coefficients(self, grads: Tensor, relative_losses: Tensor) -> Tensor:
        """c_k of the representation update sum_k c_k g_k for the variant."""
        norms = self._norms(grads.reshape(grads.shape[0], -1)).clamp_min(1e-15)
        if self.step_count in (0, self.options.burn_in):
            self.initial_norms.copy_(norms)
        if self.options.variant == "rotate_only":
            return torch.ones(self.num_tasks)
        if self.options.variant == "rotograd":
            ratios = norms / self.initial_norms
            shares = ratios / ratios.sum().clamp_min(1e-15)
            return ((shares * norms).sum() / norms).cpu()
        return self._gradnorm_weights(grads, norms, relative_losses)

    def _gradnorm_weights(self, grads: Tensor, norms: Tensor, relative_losses: Tensor) -> Tensor:
        k = self.num_tasks
        weights = k * torch.softmax(self.gn_logits, 0)
        mean_grad = (weights.detach().view(-1, *[1] * (grads.dim() - 1)) * grads).sum(0) / k
        ratio = relative_losses.to(norms.device) / relative_losses.mean()
        target = self._norms(mean_grad.reshape(1, -1))[0] * ratio ** self.options.alpha
        (norms * weights - target).abs().sum().backward()
        return weights.detach().cpu()

    def _extra_state(self):
        return {"coop": self._coop}

    def _load_extra_state(self, state):
        self._coop = bool(state["coop"])
        self._cache = None


@METHODS.register("rotate_only")
class RotateOnly(RotoGrad):
    """RotoGrad's rotations without magnitude homogenisation (rotograd ``RotateOnly``)."""

    Options = RotateOnlyOptions


@METHODS.register("rotograd_norm")
class RotoGradNorm(RotoGrad):
    """RotoGrad's rotations with GradNorm weights on the representation gradients (``RotoGradNorm``)."""

    Options = RotoGradNormOptions

"""Gaussian observation likelihoods, and the guidance that turns a prior denoiser into a posterior
one.

Both guidances are *denoisers*: they wrap a prior denoiser ``D(x; sigma)`` and return an estimate of
``E[x_0 | x_t, y]``, so every sampler runs guided (the habit of azula's ``MMPSDenoiser``). With the
score identity ``grad log p(x_t) = (D - x_t) / sigma^2``, adding ``sigma^2 * s_l`` to the denoiser
adds
the likelihood score ``s_l = grad_x log p(y | x_t)`` to the prior score.

References
----------
Chakraborty et al. (2025). Multimodal atmospheric super-resolution with deep generative models.
    Algorithm 1, Eqs. 13-14.
Rozet, F., Louppe, G. (2023). Score-based data assimilation. NeurIPS.
Rozet, F., Andry, G., Lanusse, F., Louppe, G. (2024). Learning diffusion priors from observations
    by expectation maximization. NeurIPS. (moment matching posterior sampling, MMPS)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import ArgumentError
from .operators import as_operator, group_operators, row_norms_sq, stack_operators

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_obs(value, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if t.numel() not in (1, n):
        raise ArgumentError(f"{name} has {t.numel()} values for {n} observations; give 1 or {n}.")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ArgumentError(f"{name} must be finite and >= 0, got min {t.min().item():g}.")
    return t.expand(n).clone()


class GaussianLikelihood(nn.Module):
    """One observation source with Gaussian errors, Eq. 13 of Chakraborty et al. (2025).

    ``log p(y | x_t) = -1/2 sum_i (y_i - M(D(x_t))_i)^2 / (Sigma_y,i + sigma^2 Gamma_i)``

    Parameters
    ----------
    y : tensor, shape (n,)
        Observed values.
    operator : SparseOperator or callable
        ``M``, mapping a state ``(B, C, H, W)`` to ``(B, n)``.
    sigma_y : float or tensor (n,)
        Observation-error variance ``Sigma_y`` (squared units of ``y``).
    gamma : float or tensor (n,)
        ``Gamma``: inflation of the variance with the noise level, in squared units of ``y`` per
        unit of ``sigma^2`` (the paper's guidance only; MMPS ignores it).
    weight : float
        Weight of this source's log-likelihood in the sum of Eq. 14 (>= 0).
    state_shape : tuple
        ``(C, H, W)``, needed to wrap a plain callable.
    """

    def __init__(
        self,
        y,
        operator,
        *,
        sigma_y=1.0,
        gamma=1.0,
        weight: float = 1.0,
        state_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        y = torch.as_tensor(y, dtype=torch.float32).reshape(-1)
        n = y.numel()
        if not torch.isfinite(y).all():
            raise ArgumentError("y contains NaN or inf; drop missing observations before guiding.")
        if not (weight >= 0):
            raise ArgumentError(f"weight={weight!r} must be >= 0.")
        self.register_buffer("y", y)
        self.register_buffer("sigma_y", _per_obs(sigma_y, n, "sigma_y"))
        self.register_buffer("gamma", _per_obs(gamma, n, "gamma"))
        self.weight = float(weight)
        shape = state_shape if state_shape is not None else getattr(operator, "state_shape", None)
        self.operator = as_operator(operator, shape)

    @property
    def n_obs(self) -> int:
        return self.y.numel()

    def log_prob(self, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Weighted ``w log p(y | x_t)`` evaluated on the denoised ``x0`` (B, C, H, W) -> (B,)."""
        var = self.sigma_y + sigma.reshape(-1, 1) ** 2 * self.gamma
        r = self.y - self.operator(x0)
        return -0.5 * self.weight * (r.square() / var).sum(dim=1)


def _as_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    return (
        torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])
    )


class ScoreGuidance(nn.Module):
    """The paper's guidance (Algorithm 1): ``D_post = D + lambda_g sigma^2 s_l``.

    ``s_l = grad_{x_t} sum_k w_k log p_k(y_k | x_t)`` (Eqs. 13-14) by autograd through the prior
    denoiser, so that the sampler's drift becomes ``d_pos = d_prior - lambda_g * t * s_l``.

    Parameters
    ----------
    denoiser : callable
        Prior denoiser ``D(x, sigma)``, x of shape (B, C, H, W), sigma of shape (B,).
    likelihoods : sequence of GaussianLikelihood
        The observation sources; their ``weight`` enters Eq. 14.
    lambda_g : float
        Guidance scale.
    clip : float, optional
        If given, the per-member root-mean-square of the guidance displacement
        ``lambda_g sigma^2 s_l`` is clipped to ``clip`` (normalised units), which keeps small
        ``Gamma`` from diverging.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        likelihoods: Sequence[GaussianLikelihood],
        *,
        lambda_g: float = 1.0,
        clip: float | None = None,
    ):
        super().__init__()
        self.prior = denoiser
        self.likelihoods = nn.ModuleList(likelihoods)
        self.lambda_g = float(lambda_g)
        self.clip = clip

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = _as_sigma(sigma, x)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            D = self.prior(x_in, sigma)
            logp = sum(lik.log_prob(D, sigma) for lik in self.likelihoods)
            (s_l,) = torch.autograd.grad(logp.sum(), x_in)
        step = self.lambda_g * sigma.reshape(-1, 1, 1, 1) ** 2 * s_l
        if self.clip is not None:
            rms = step.flatten(1).square().mean(dim=1).sqrt().reshape(-1, 1, 1, 1)
            step = step * torch.clamp(self.clip / (rms + 1e-12), max=1.0)
        return D.detach() + step


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    iters: int = 10,
    tol: float = 1e-6,
    diag: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``A u = b`` for symmetric positive ``A`` by batched (Jacobi-preconditioned) CG.

    ``b`` has shape (B, n); each row is solved independently with the same number of iterations
    (converged rows simply stop moving). A row has converged when its preconditioned residual norm
    has fallen below ``tol`` times its initial one; the loop ends early, after at most ``iters``
    iterations, once every row has (one host synchronisation per iteration, negligible next to a
    vector-Jacobian product through a network). ``diag`` (B, n) or (n,), an
    estimate of ``diag(A)``, preconditions systems whose rows have very different scales (mixed
    units across observation sources).
    """
    return _cg(lambda p: (matvec(p), None), b, iters=iters, tol=tol, diag=diag)[0]


def _cg(
    matvec: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
    b: torch.Tensor,
    *,
    iters: int,
    tol: float,
    diag: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`conjugate_gradient` that also returns ``L u = sum_k alpha_k L p_k`` for a linear map
    ``L`` whose values ``L p`` ``matvec`` returns next to ``A p`` (None: not tracked).

    ``u`` is the sum of the CG steps ``alpha_k p_k``, so for MMPS the state-space correction
    ``J^T M^T u`` is the same combination of the vector-Jacobian products CG already computed:
    no extra backward pass.
    """
    inv_d = torch.ones_like(b) if diag is None else 1.0 / diag.expand_as(b)
    u = torch.zeros_like(b)
    Lu = None
    r = b.clone()
    z = r * inv_d
    p = z.clone()
    rz = (r * z).sum(dim=1, keepdim=True)
    floor = tol**2 * rz
    live = torch.ones_like(rz, dtype=torch.bool)
    for _ in range(iters):
        live = live & (rz > floor)
        if not bool(live.any()):  # every row converged: skip the remaining matvecs
            break
        Ap, Lp = matvec(p)
        pAp = (p * Ap).sum(dim=1, keepdim=True)
        # A row stops for good once converged or when it meets non-positive (or non-finite)
        # curvature: A = Sigma_y + sigma^2 M J M^T is positive definite only if the network's
        # Jacobian J is (Steihaug's truncated CG keeps the last iterate instead of diverging).
        live = live & torch.isfinite(pAp) & (pAp > 0)
        alpha = torch.where(live, rz / torch.where(live, pAp, torch.ones_like(pAp)), 0.0)
        u = u + alpha * p
        if Lp is not None:
            a = alpha.reshape(-1, *([1] * (Lp.ndim - 1)))
            # a dead row's alpha is 0, but 0 * inf is nan: keep its value instead
            step = torch.where(a != 0, a * Lp, 0.0)
            Lu = step if Lu is None else Lu + step
        r = torch.where(live, r - alpha * Ap, r)
        z = r * inv_d
        rz_new = (r * z).sum(dim=1, keepdim=True)
        beta = torch.where(live, rz_new / rz.clamp_min(1e-30), 0.0)
        p = torch.where(live, z + beta * p, p)
        rz = torch.where(live, rz_new, rz)
    return u, Lu


def _obs_trust(m_step: torch.Tensor, r: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Per-member factor in [0, 1] of the observation-space trust region of MMPS."""
    w = 1.0 / var
    mm = (m_step.square() * w).sum(dim=1)
    rr = (r.square() * w).sum(dim=1)
    rm = (r * m_step * w).sum(dim=1)
    tiny = torch.finfo(mm.dtype).tiny
    limit = torch.minimum((rr / mm.clamp_min(tiny)).sqrt(), 2 * rm / mm.clamp_min(tiny))
    factor = torch.where(mm > 0, limit.clamp(0.0, 1.0), torch.ones_like(mm))
    return torch.where(torch.isfinite(factor), factor, torch.zeros_like(factor))


def _moment_matching_setup(module: nn.Module, denoiser: Denoiser,
                           likelihoods: Sequence[GaussianLikelihood], cg_iters: int,
                           cg_tol: float, lambda_g: float, trust_region: bool) -> list:
    """The attributes :class:`MMPSGuidance` and :class:`JFGuidance` share; returns the sources
    kept (weight > 0: a weight of 0 drops a source)."""
    if not (0.0 <= cg_tol < 1.0):
        raise ArgumentError(f"cg_tol={cg_tol!r} must be in [0, 1).")
    keep = [lik for lik in likelihoods if lik.weight > 0]
    module.prior = denoiser
    module.likelihoods = nn.ModuleList(keep)
    module.operator = stack_operators([lik.operator for lik in keep])
    module.cg_iters = int(cg_iters)
    module.cg_tol = float(cg_tol)
    module.trust_region = bool(trust_region)
    module.lambda_g = float(lambda_g)
    return keep


class MMPSGuidance(nn.Module):
    """Moment-matching posterior sampling (Rozet et al., 2024) as a posterior denoiser.

    ``D_post = D + sigma^2 J^T M^T (Sigma_y + sigma^2 M J M^T)^{-1} (y - M D)``, where ``J`` is the
    Jacobian of the prior denoiser, so ``sigma^2 J`` is Tweedie's covariance ``Cov[x_0 | x_t]``. The
    linear system is solved by ``cg_iters`` conjugate-gradient iterations of vector-Jacobian
    products. Exact for a Gaussian prior and linear operators; no ``Gamma`` to tune.

    Several sources are stacked into one system; a source weight ``w_k`` tempers its likelihood,
    ``w_k log N(y_k; M_k x, Sigma_k) = log N(y_k; M_k x, Sigma_k / w_k) + const``, so it divides the
    source's ``Sigma_y`` (a weight of 0 drops the source).

    Parameters
    ----------
    denoiser : callable
        Prior denoiser ``D(x, sigma)``.
    likelihoods : sequence of GaussianLikelihood
        Sources with linear (affine) operators exposing ``adjoint``.
    cg_iters : int
        Maximum conjugate-gradient iterations (each costs one vector-Jacobian product, a
        backward pass through the network). The correction ``J^T M^T u`` needs no extra one:
        ``u = sum_k alpha_k p_k`` is a combination of CG's directions, so ``J^T M^T u`` is the
        same combination of the products CG computed. One evaluation costs one forward and
        (at most) ``cg_iters`` backward passes.
    cg_tol : float
        Relative-residual tolerance of CG: a member's system is solved once its (preconditioned)
        residual norm falls below ``cg_tol`` times the initial one; all members solved ends CG
        before ``cg_iters``.
    lambda_g : float
        Optional scale of the correction (1 is the exact moment-matched posterior).
    trust_region : bool
        Scale each member's correction ``Delta`` down so that, in the observation-error norm
        ``|v|_R = |Sigma_y^{-1/2} v|``, its image ``M Delta`` is no longer than the innovation
        ``r = y - M D`` and does not increase the residual (``|r - M Delta|_R <= |r|_R``). Exact
        moment matching satisfies both (``M Delta = C (I + C)^{-1} r`` in whitened units, with
        ``C`` positive semi-definite), so the region never binds for a Gaussian prior; it stops
        a network whose Jacobian is not a covariance (states far from its training data) from
        overshooting the observations.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        likelihoods: Sequence[GaussianLikelihood],
        *,
        cg_iters: int = 10,
        cg_tol: float = 1e-6,
        lambda_g: float = 1.0,
        trust_region: bool = True,
    ):
        super().__init__()
        keep = _moment_matching_setup(self, denoiser, likelihoods, cg_iters, cg_tol, lambda_g,
                                      trust_region)
        #: J^T M^T u as the combination of the VJPs CG computed (False: one more backward
        #: pass, the reference path the tests compare with)
        self._reuse_vjps = True
        self._row_norms = _row_norms(keep) if keep else torch.zeros(0)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = _as_sigma(sigma, x)
        if len(self.likelihoods) == 0:
            return self.prior(x, sigma)
        y = torch.cat([lik.y for lik in self.likelihoods])
        var_y = torch.cat([lik.sigma_y / lik.weight for lik in self.likelihoods])
        s2 = sigma.reshape(-1, 1) ** 2
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            D = self.prior(x_in, sigma)
            r = (y - self.operator(D)).detach()

            def vjp(v: torch.Tensor) -> torch.Tensor:  # J^T M^T v
                (g,) = torch.autograd.grad(D, x_in, self.operator.adjoint(v), retain_graph=True)
                return g

            def matvec(v: torch.Tensor):  # (Sigma_y + sigma^2 M J M^T) v, and J^T M^T v
                g = vjp(v)
                return var_y * v + s2 * self.operator.linear(g), g

            # Jacobi preconditioner: Sigma_y + sigma^2/(1+sigma^2) |m_i|^2, the diagonal for a
            # unit-variance white prior (J = I / (1 + sigma^2)); sources in mixed units need it.
            diag = var_y + s2 / (1 + s2) * self._row_norms
            u, g_u = _cg(matvec, r, iters=self.cg_iters, tol=self.cg_tol, diag=diag)
            if not self._reuse_vjps:  # the reference path: one more backward pass
                g_u = vjp(u)
            elif g_u is None:  # CG took no step (every residual already zero): u = 0
                g_u = torch.zeros_like(x_in)
            step = s2.reshape(-1, 1, 1, 1) * g_u
        if self.trust_region:
            step = step * _obs_trust(self.operator.linear(step), r, var_y).reshape(-1, 1, 1, 1)
        return D.detach() + self.lambda_g * step


class JFGuidance(nn.Module):
    """Jacobian-free moment matching: MMPS with a prior covariance in place of the network's
    Jacobian.

    ``D_post = D + S M^T (Sigma_y + M S M^T)^{-1} (y - M D)`` with ``S = sigma^2 B (B +
    sigma^2 I)^{-1}``, Tweedie's covariance of a Gaussian prior of covariance ``B``
    (:class:`~xdiffsr.core.covariance.SpectralCovariance`) where MMPS has ``sigma^2 dD/dx_t``.
    One forward pass per evaluation and no backward pass: CG's products cost an FFT, not the
    network. Exact for a Gaussian prior of covariance ``B`` and linear operators.

    Parameters
    ----------
    denoiser : callable
        Prior denoiser ``D(x, sigma)``.
    likelihoods : sequence of GaussianLikelihood
        Sources with linear (affine) operators exposing ``adjoint``; weights divide
        ``Sigma_y`` as in :class:`MMPSGuidance`.
    covariance : callable
        ``covariance(v, sigma)``: Tweedie's covariance applied to ``v`` (B, *state shape),
        symmetric positive semi-definite; with a ``variance(sigma)`` method (per-channel mean
        diagonal) for the preconditioner, else a unit variance is assumed.
    cg_iters, cg_tol : int, float
        Conjugate gradients on the observation-space system (cheap: no network).
    lambda_g : float
        Scale of the correction.
    trust_region : bool
        As in :class:`MMPSGuidance`.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        likelihoods: Sequence[GaussianLikelihood],
        covariance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        cg_iters: int = 50,
        cg_tol: float = 1e-4,
        lambda_g: float = 1.0,
        trust_region: bool = True,
    ):
        super().__init__()
        _moment_matching_setup(self, denoiser, likelihoods, cg_iters, cg_tol, lambda_g,
                               trust_region)
        self.covariance = covariance

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = _as_sigma(sigma, x)
        with torch.no_grad():
            D = self.prior(x, sigma)
            if len(self.likelihoods) == 0:
                return D
            y = torch.cat([lik.y for lik in self.likelihoods])
            var_y = torch.cat([lik.sigma_y / lik.weight for lik in self.likelihoods])
            r = y - self.operator(D)

            def matvec(v: torch.Tensor):  # (Sigma_y + M S M^T) v, and S M^T v
                g = self.covariance(self.operator.adjoint(v), sigma)
                return var_y * v + self.operator.linear(g), g

            # Jacobi preconditioner: the diagonal of M S M^T for S = mean variance * I
            var = getattr(self.covariance, "variance", None)
            s_diag = var(sigma).mean(dim=-1, keepdim=True) if var is not None else 1.0
            diag = var_y + s_diag * _row_norms(self.likelihoods).to(r.device)
            _, step = _cg(matvec, r, iters=self.cg_iters, tol=self.cg_tol, diag=diag)
            if step is None:
                return D
            if self.trust_region:
                step = step * _obs_trust(self.operator.linear(step), r, var_y).reshape(
                    -1, *([1] * (step.ndim - 1))
                )
        return D + self.lambda_g * step


class NoiseBandGuidance(nn.Module):
    """One posterior denoiser inside a band of noise levels, another outside it.

    ``D(x, sigma) = inner(x, sigma)`` where ``lo <= sigma <= hi`` (the largest ``sigma`` of the
    batch), ``outer(x, sigma)`` elsewhere: e.g. MMPS (the network's Jacobian) at mid noise,
    where the prior's Tweedie covariance is least like a stationary one, and Jacobian-free
    moment matching elsewhere.

    Parameters
    ----------
    outer, inner : callable
        Posterior denoisers ``D(x, sigma)`` (e.g. :class:`JFGuidance`, :class:`MMPSGuidance`).
    band : (float, float)
        ``(lo, hi)``, the noise levels of ``inner``.
    """

    def __init__(self, outer: Denoiser, inner: Denoiser, band: tuple[float, float]):
        super().__init__()
        lo, hi = (float(b) for b in band)
        if not (0.0 <= lo < hi):
            raise ArgumentError(f"band={band!r} must be (lo, hi) with 0 <= lo < hi.")
        self.outer, self.inner, self.band = outer, inner, (lo, hi)

    @property
    def prior(self) -> Denoiser:
        """The prior denoiser both posterior denoisers wrap (the unguided Heun corrector)."""
        return getattr(self.outer, "prior", self.outer)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = float(torch.as_tensor(sigma).max())
        lo, hi = self.band
        return (self.inner if lo <= s <= hi else self.outer)(x, sigma)


class RowGroupedLikelihood(nn.Module):
    """The observations of several groups of batch rows as one source: group ``k`` (``rows[k]``
    consecutive rows, e.g. the members of one time) is observed by its own sources.

    Each group's sources are stacked (``y``, ``Sigma_y / w``, ``Gamma / w``: a weight tempers
    its source as in :class:`MMPSGuidance` and, for the paper's guidance, Eq. 14) and padded to
    the largest group's count with ``y = 0``, ``Sigma_y = 1``, ``Gamma = 0`` and operator rows
    of zero, which no guidance moves: the padding's residual is zero. So ``y``, ``sigma_y`` and
    ``gamma`` have shape ``(sum(rows), n)``, and a guidance over this source gives each row the
    correction of its own group's sources.

    Parameters
    ----------
    groups : sequence of sequences of GaussianLikelihood
        The sources of each group (weight-0 sources are dropped).
    rows : sequence of int
        Batch rows of each group, in order.
    """

    def __init__(self, groups: Sequence[Sequence[GaussianLikelihood]], rows: Sequence[int]):
        super().__init__()
        if len(groups) != len(rows):
            raise ArgumentError(f"{len(groups)} groups of sources for {len(rows)} row counts.")
        kept = [[lik for lik in liks if lik.weight > 0] for liks in groups]
        sizes = [sum(lik.n_obs for lik in liks) for liks in kept]
        n = max(sizes, default=0)
        device = next((lik.y.device for liks in kept for lik in liks), torch.device("cpu"))

        def rows_of(values: list[torch.Tensor], pad: float, size: int, r: int) -> torch.Tensor:
            v = torch.cat(values) if values else torch.zeros(0, device=device)
            return nn.functional.pad(v, (0, n - size), value=pad).expand(r, n)

        y, var, gamma = [], [], []
        for liks, size, r in zip(kept, sizes, rows):
            y.append(rows_of([lik.y for lik in liks], 0.0, size, r))
            var.append(rows_of([lik.sigma_y / lik.weight for lik in liks], 1.0, size, r))
            gamma.append(rows_of([lik.gamma / lik.weight for lik in liks], 0.0, size, r))
        self.register_buffer("y", torch.cat(y))
        self.register_buffer("sigma_y", torch.cat(var))
        self.register_buffer("gamma", torch.cat(gamma))
        self.weight = 1.0
        ops = [stack_operators([lik.operator for lik in liks]) if liks else None
               for liks in kept]
        self.operator = group_operators(ops, rows, sizes)

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[1])

    log_prob = GaussianLikelihood.log_prob


def batch_guidances(denoisers: Sequence[nn.Module], rows: Sequence[int]) -> nn.Module:
    """One guided denoiser for a batch whose consecutive row groups have their own observations.

    ``denoisers[k]`` is the posterior denoiser of group ``k`` (``rows[k]`` rows, e.g. the
    members of one time); all are of one kind (:class:`ScoreGuidance`, :class:`MMPSGuidance`,
    :class:`JFGuidance`, :class:`NoiseBandGuidance` of those, or the same prior denoiser) and
    share the prior network and settings. The result runs the network once on the whole batch
    and gives each row its own group's correction (:class:`RowGroupedLikelihood`): the same
    members as the separate denoisers, in one network batch.

    Raises
    ------
    ArgumentError
        Denoisers of different kinds, priors or settings.
    """
    dens = list(denoisers)
    first = dens[0]
    kinds = {type(d) for d in dens}
    if len(kinds) > 1 or len(dens) != len(rows):
        raise ArgumentError(
            f"batch_guidances needs one denoiser per row group, all of one kind; got "
            f"{len(dens)} for {len(rows)} groups, kinds {sorted(k.__name__ for k in kinds)}."
        )
    if isinstance(first, NoiseBandGuidance):
        if len({d.band for d in dens}) > 1:
            raise ArgumentError("the groups' denoisers have different noise bands.")
        return NoiseBandGuidance(batch_guidances([d.outer for d in dens], rows),
                                 batch_guidances([d.inner for d in dens], rows), first.band)
    if not isinstance(first, ScoreGuidance | MMPSGuidance | JFGuidance):
        if any(d is not first for d in dens):
            raise ArgumentError("unguided groups must share one prior denoiser.")
        return first
    names = {
        ScoreGuidance: ("lambda_g", "clip"),
        MMPSGuidance: ("cg_iters", "cg_tol", "lambda_g", "trust_region"),
        JFGuidance: ("cg_iters", "cg_tol", "lambda_g", "trust_region"),
    }[type(first)]
    options = {k: getattr(first, k) for k in names}
    if any(d.prior is not first.prior or {k: getattr(d, k) for k in names} != options
           for d in dens):
        raise ArgumentError("the groups' denoisers must share the prior network and settings.")
    lik = RowGroupedLikelihood([list(d.likelihoods) for d in dens], rows)
    if isinstance(first, JFGuidance):
        if any(d.covariance is not first.covariance for d in dens):
            raise ArgumentError("the groups' Jacobian-free denoisers must share a covariance.")
        return JFGuidance(first.prior, [lik], first.covariance, **options)
    out = type(first)(first.prior, [lik], **options)
    if isinstance(first, MMPSGuidance):
        out._reuse_vjps = first._reuse_vjps
    return out


def _row_norms(likelihoods: Sequence[GaussianLikelihood]) -> torch.Tensor:
    """``|m_i|^2`` of every observation row (1 where an operator does not say)."""
    out = []
    for lik in likelihoods:
        out.append(row_norms_sq(lik.operator, lik.n_obs).to(lik.y.device))
    return torch.cat(out)


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts the backward passes through the wrapped network."""

    @staticmethod
    def forward(ctx, x, counter):
        ctx.counter = counter
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.counter.backward_passes += 1
        ctx.counter.backward_rows += grad.shape[0]
        return grad, None


class PassCounter(nn.Module):
    """A denoiser that counts the network passes of the denoiser it wraps.

    ``forward_passes`` counts calls (one forward pass of a batch each); ``backward_passes``
    counts vector-Jacobian products through it (``torch.autograd.grad`` or ``backward`` reaching
    its output); ``forward_rows`` and ``backward_rows`` add up their batch sizes (members), so
    ``(forward_rows + backward_rows) / members`` is the number of passes per member. For
    benchmarks and tests: wrap a guidance's ``prior`` to count its cost.
    """

    def __init__(self, denoiser: Denoiser):
        super().__init__()
        self.denoiser = denoiser
        self.forward_passes = self.backward_passes = 0
        self.forward_rows = self.backward_rows = 0

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.forward_passes += 1
        self.forward_rows += x.shape[0]
        out = self.denoiser(x, sigma)
        return _CountBackward.apply(out, self) if out.requires_grad else out

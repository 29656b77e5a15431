"""Differentiable observation operators ``M`` mapping a model state to observation space.

A state is a tensor ``x`` of shape ``(B, C, H, W)`` (members, channels/variables, lat, lon) in the
model's normalised space. An operator returns ``(B, n)`` predicted observations. Linear (affine)
operators also expose :meth:`adjoint`, which moment-matching guidance (MMPS) needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import ArgumentError


class _SparseMatMul(torch.autograd.Function):
    """``Y = A @ X`` with a precomputed transpose for the backward pass (no sparse autograd)."""

    @staticmethod
    def forward(ctx, A: torch.Tensor, AT: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        ctx.AT = AT
        return A @ X

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        return None, None, ctx.AT @ G


def _to_csr(matrix, dtype: torch.dtype) -> torch.Tensor:
    """Convert a scipy.sparse matrix, dense array or torch tensor to a torch CSR tensor."""
    with warnings.catch_warnings():  # torch flags CSR as beta on every construction
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        return _to_csr_quiet(matrix, dtype)


def _to_csr_quiet(matrix, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(matrix, torch.Tensor):
        t = matrix if matrix.layout != torch.strided else matrix.to_sparse_coo()
        return t.to(dtype).to_sparse_csr()
    if hasattr(matrix, "tocsr"):  # scipy.sparse
        m = matrix.tocsr()
        m.sort_indices()
        return torch.sparse_csr_tensor(
            torch.as_tensor(m.indptr, dtype=torch.int64),
            torch.as_tensor(m.indices, dtype=torch.int64),
            torch.as_tensor(m.data, dtype=dtype),
            size=m.shape,
        )
    return torch.as_tensor(matrix, dtype=dtype).to_sparse_csr()


class SparseOperator(nn.Module):
    """Affine operator ``M(x) = A vec(x) + b`` with a sparse matrix ``A``.

    Parameters
    ----------
    matrix : scipy.sparse matrix, array or torch tensor
        Shape ``(n, C*H*W)``; columns index the state flattened in C order over (C, H, W).
    state_shape : tuple of int
        ``(C, H, W)`` of the state the operator acts on.
    offset : array-like, optional
        ``b``, shape ``(n,)``; zero by default.

    dense_below : int
        Store ``A`` densely when it has at most this many elements (small problems multiply
        faster dense, above all on CPU).

    Notes
    -----
    The matrix and its transpose are stored as CSR buffers, so ``.to(device)`` moves them and the
    backward pass is a second sparse product (no autograd through sparse tensors).
    """

    def __init__(
        self,
        matrix,
        state_shape: Sequence[int],
        *,
        offset=None,
        dtype=torch.float32,
        dense_below: int = 2**21,
    ):
        super().__init__()
        A = _to_csr(matrix, dtype)
        self.state_shape = tuple(int(s) for s in state_shape)
        n_state = 1
        for s in self.state_shape:
            n_state *= s
        if A.shape[1] != n_state:
            raise ArgumentError(
                f"matrix has {A.shape[1]} columns but state_shape={self.state_shape} has {n_state} "
                "elements; build the matrix over the state flattened in (C, H, W) order."
            )
        AT = _to_csr(A.to_sparse_coo().t().coalesce(), dtype)
        if A.shape[0] * A.shape[1] <= dense_below:
            A, AT = A.to_dense(), AT.to_dense()
        self.register_buffer("A", A, persistent=False)
        self.register_buffer("AT", AT, persistent=False)
        b = torch.zeros(A.shape[0], dtype=dtype) if offset is None else torch.as_tensor(offset)
        self.register_buffer("offset", b.to(dtype).reshape(-1), persistent=False)

    @property
    def n_obs(self) -> int:
        """Number of observations ``n``."""
        return int(self.A.shape[0])

    def row_norms_sq(self) -> torch.Tensor:
        """``|a_i|^2`` for every row of ``A``, shape (n,)."""
        if self.A.layout == torch.strided:
            return self.A.square().sum(dim=1)
        sq = torch.sparse_csr_tensor(
            self.A.crow_indices(), self.A.col_indices(), self.A.values().square(), size=self.A.shape
        )
        return (sq @ torch.ones(sq.shape[1], 1, dtype=sq.dtype, device=sq.device))[:, 0]

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``A vec(x)`` for ``x`` of shape ``(B, C, H, W)``; returns ``(B, n)``."""
        X = x.reshape(x.shape[0], -1).T.to(self.A.dtype)
        return _SparseMatMul.apply(self.A, self.AT, X).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A vec(x) + b``; ``x`` of shape ``(B, C, H, W)``, returns ``(B, n)``."""
        return self.linear(x) + self.offset

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``A^T v`` for ``v`` of shape ``(B, n)``; returns ``(B, C, H, W)``."""
        out = _SparseMatMul.apply(self.AT, self.A, v.T.to(self.A.dtype)).T
        return out.reshape(v.shape[0], *self.state_shape)

    def extra_repr(self) -> str:
        return f"n_obs={self.n_obs}, state_shape={self.state_shape}, layout={self.A.layout}"


class CallableOperator(nn.Module):
    """Wrap any differentiable callable ``f(x: (B,C,H,W)) -> (B, n)`` as an operator.

    Its :meth:`adjoint` is a vector-Jacobian product at ``x = 0``, exact only for linear ``f``:
    moment-matching guidance with a nonlinear operator is therefore an approximation.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], state_shape: Sequence[int]):
        super().__init__()
        self.fn = fn
        self.state_shape = tuple(int(s) for s in state_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) - self.fn(torch.zeros_like(x))

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            z = torch.zeros(v.shape[0], *self.state_shape, dtype=v.dtype, device=v.device)
            z.requires_grad_(True)
            (g,) = torch.autograd.grad(self.fn(z), z, v)
        return g


class StackedOperator(nn.Module):
    """Concatenation ``[M_1(x); M_2(x); ...]`` of several operators along the observation axis."""

    def __init__(self, operators: Sequence[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(operators)
        #: observations of each operator (from ``n_obs`` where all say; else set by forward)
        sizes = [getattr(op, "n_obs", None) for op in operators]
        self.sizes: list[int] = [] if None in sizes else [int(n) for n in sizes]
        self.state_shape = getattr(operators[0], "state_shape", None) if operators else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [op(x) for op in self.ops]
        self.sizes = [o.shape[1] for o in outs]
        return torch.cat(outs, dim=1)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([op.linear(x) for op in self.ops], dim=1)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        parts = torch.split(v, self.sizes, dim=1)
        return sum(op.adjoint(p) for op, p in zip(self.ops, parts))

    @property
    def n_obs(self) -> int | None:
        """Number of observations (None before a forward call, if an operator does not say)."""
        return sum(self.sizes) if self.sizes else None

    def row_norms_sq(self) -> torch.Tensor:
        """``|m_i|^2`` of every observation row (1 where an operator does not say)."""
        if not self.sizes:
            raise ArgumentError("row norms of stacked operators whose sizes are not known yet.")
        out = []
        for op, n in zip(self.ops, self.sizes):
            out.append(row_norms_sq(op, n))
        return torch.cat(out)


def row_norms_sq(op: nn.Module, n: int) -> torch.Tensor:
    """``|m_i|^2`` of the ``n`` rows of ``op`` (its ``row_norms_sq``), 1 where it does not say
    (the scale a Jacobi preconditioner assumes)."""
    norms = getattr(op, "row_norms_sq", None)
    return norms() if norms is not None else torch.ones(n, device=_device(op))


def _device(module: nn.Module) -> torch.device:
    for t in (*module.buffers(), *module.parameters()):
        return t.device
    return torch.device("cpu")


def stack_operators(operators: Sequence[nn.Module]) -> nn.Module:
    """One operator for several sources: ``[M_1(x); M_2(x); ...]``.

    Operators that compose one inner map with different outer ones (every source of a latent
    prior: ``M_k o Dec``, operators with ``restack`` and ``decoder``) are stacked *inside* it,
    ``[M_1; M_2; ...] o Dec``, so the inner map is evaluated and linearised once for all
    sources rather than once per source.
    """
    ops = list(operators)
    if len(ops) == 1:
        return ops[0]
    if len(ops) > 1 and all(hasattr(op, "restack") for op in ops):
        if len({id(op.decoder) for op in ops}) == 1:
            return ops[0].restack(StackedOperator([op.op for op in ops]))
    return StackedOperator(ops)


class RowGroupedOperator(nn.Module):
    """Different operators for consecutive groups of batch rows: rows ``[r_0, r_0 + n_0)`` of a
    batch are observed by ``M_0``, the next ``n_1`` rows by ``M_1``, and so on (e.g. the members
    of several times of a year run sharing one network batch, each time with its own
    observations).

    Outputs have ``max_k n_obs(M_k)`` columns; a group's predictions fill its first columns and
    the rest are zero, a padding that moment-matching guidance leaves at zero (its residual,
    operator rows and products are zero there).

    Parameters
    ----------
    operators : sequence of nn.Module
        One operator per group, with ``forward``, ``linear`` and ``adjoint`` on the same state
        shape (or None: a group without observations).
    rows : sequence of int
        Batch rows of each group, in order; a batch has ``sum(rows)`` rows.
    sizes : sequence of int
        Observations of each group's operator (its ``n_obs``).
    """

    def __init__(self, operators: Sequence[nn.Module | None], rows: Sequence[int],
                 sizes: Sequence[int]):
        super().__init__()
        if not (len(operators) == len(rows) == len(sizes)) or not operators:
            raise ArgumentError(
                f"operators, rows and sizes must have one entry per group, got {len(operators)}, "
                f"{len(rows)} and {len(sizes)}."
            )
        if any(int(r) < 1 for r in rows) or any(int(n) < 0 for n in sizes):
            raise ArgumentError(f"rows={list(rows)} must be >= 1 and sizes={list(sizes)} >= 0.")
        self.ops = nn.ModuleList([nn.Identity() if op is None else op for op in operators])
        self.rows = [int(r) for r in rows]
        self.sizes = [0 if op is None else int(n) for op, n in zip(operators, sizes)]
        self.n_obs = max(self.sizes)
        shapes = {tuple(op.state_shape) for op in operators if op is not None}
        if len(shapes) > 1:
            raise ArgumentError(f"the groups' operators act on different states: {shapes}.")
        self.state_shape = shapes.pop() if shapes else None

    def _groups(self, t: torch.Tensor):
        if t.shape[0] != sum(self.rows):
            raise ArgumentError(
                f"a batch of {t.shape[0]} rows for groups of {self.rows} rows; the batch must "
                "hold exactly the groups' rows, in order."
            )
        return zip(self.ops, self.sizes, torch.split(t, self.rows, dim=0))

    def _pad(self, outs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([nn.functional.pad(o, (0, self.n_obs - o.shape[1])) for o in outs])

    def _apply(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self._pad([getattr(op, name)(part) if n else part.new_zeros(part.shape[0], 0)
                          for op, n, part in self._groups(x)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, n)``: each group's ``M_k(x)``, zero-padded."""
        return self._apply("forward", x)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part of each group's operator, zero-padded."""
        return self._apply("linear", x)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, n) -> (B, C, H, W)``: each group's ``M_k^T`` of its first ``n_k`` columns."""
        shape = self.state_shape or ()
        return torch.cat([op.adjoint(part[:, :n]) if n
                          else part.new_zeros(part.shape[0], *shape)
                          for op, n, part in self._groups(v)])

    def row_norms_sq(self) -> torch.Tensor:
        """``|m_i|^2`` per row and observation, shape (B, n): each group's (1 where its
        operator does not say), 0 in the padding."""
        out = []
        for op, n, r in zip(self.ops, self.sizes, self.rows):
            v = row_norms_sq(op, n) if n else torch.zeros(0, device=_device(self))
            out.append(nn.functional.pad(v.reshape(1, -1), (0, self.n_obs - n)).expand(r, -1))
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"rows={self.rows}, sizes={self.sizes}"


def group_operators(operators: Sequence[nn.Module | None], rows: Sequence[int],
                    sizes: Sequence[int]) -> nn.Module:
    """One operator for groups of batch rows observed differently (:class:`RowGroupedOperator`).

    Operators that compose one inner map with different outer ones (a latent prior's
    ``M_k o Dec``, with ``restack`` and ``decoder``) are grouped *inside* it, so the decoder
    runs once over the whole batch: ``RowGrouped(M_1, M_2, ...) o Dec``.
    """
    ops = list(operators)
    if (len(ops) > 1 and all(op is not None and hasattr(op, "restack") for op in ops)
            and len({id(op.decoder) for op in ops}) == 1):
        return ops[0].restack(RowGroupedOperator([op.op for op in ops], rows, sizes))
    return RowGroupedOperator(ops, rows, sizes)


def as_operator(op, state_shape: Sequence[int]) -> nn.Module:
    """Return ``op`` as an operator module: modules pass through, callables are wrapped."""
    if isinstance(op, nn.Module) and hasattr(op, "adjoint"):
        return op
    if callable(op):
        return CallableOperator(op, state_shape)
    raise ArgumentError(
        f"operator={op!r} is neither a SparseOperator nor a callable; pass a sparse matrix through "
        "SparseOperator(matrix, state_shape) or a differentiable function of a (B, C, H, W) tensor."
    )

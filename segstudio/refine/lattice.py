"""A permutohedral lattice for Gaussian filtering in d dimensions, in torch.

Adams, Baek & Davis, "Fast High-Dimensional Filtering Using the
Permutohedral Lattice" (Eurographics 2010). Every feature vector is
embedded in the hyperplane ``x · 1 = 0`` of R^(d+1), which the lattice
tiles with simplices; a value is splatted onto the d+1 vertices of the
simplex enclosing its point with barycentric weights, blurred with
``[1/2, 1, 1/2]`` along each of the d+1 lattice directions and sliced back
with the same weights. The result approximates a Gaussian filter of
standard deviation 1 in feature space.

The construction follows Krähenbühl's ``permutohedral.cpp`` (the lattice
inside ``pydensecrf``) step for step, in float32 and in the same order of
operations, so the two pick the same simplices and weights; only the
hashing differs (one sort of packed integer keys, with neighbours found by
binary search, instead of a hash table). Splat, blur and slice are stored as
sparse CSR matrices, so filtering is d+3 sparse-dense products. Everything
is tensor operations on the features' device: building on CUDA works as on
the CPU, and :meth:`PermutohedralLattice.filter` does no host round trip.
"""

from __future__ import annotations

import math
import warnings

import torch

#: Bits available for a packed lattice key (int64, keeping the sign bit free).
_KEY_BITS = 62


class PermutohedralLattice:
    """The lattice of one set of features, built once and filtered many times.

    Parameters
    ----------
    features:
        ``N x d`` float tensor of positions already divided by their
        standard deviations (pydensecrf's convention). Any device.

    Attributes
    ----------
    num_points:
        N, the number of input positions.
    num_vertices:
        M, the number of distinct lattice vertices touched.
    """

    def __init__(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
            raise ValueError(f"features must be a non-empty N x d tensor, got shape {tuple(features.shape)}")
        features = features.to(torch.float32)
        device = features.device
        n, d = features.shape
        self.dim = d
        self.num_points = n
        self._alpha = 1.0 / (1.0 + 2.0 ** (-d))  # Adams' magic scaling constant

        # Coordinates are rows ((d+1) x N): every step below reads and writes
        # whole contiguous rows (column slices of N x (d+1) tensors were the
        # slowest part of building, at a few GB/s of memory bandwidth).
        elevated = _elevate(features)  # (d+1) x N
        rem0, rank = _enclosing_simplex(elevated)
        barycentric = _barycentric(elevated, rem0, rank)  # (d+1) x N
        del elevated

        # Lattice points are packed into one int64 each: coordinate k (of the
        # d that determine a point; the last follows from the zero sum) times
        # stride k. The margin keeps the simplex vertices and their blur
        # neighbours inside the packed range, so a neighbour's key is the
        # point's key plus a constant.
        margin = 2 * (d + 1)
        low = rem0[:d].amin(dim=1) - margin
        spans = (rem0[:d].amax(dim=1) + margin - low + 1).tolist()  # one host sync while building
        bits = sum(math.log2(max(int(s), 2)) for s in spans)
        if bits > _KEY_BITS:
            raise ValueError(
                f"lattice spans {spans} do not pack into a 64-bit key; use larger standard deviations"
            )
        strides = [1] * d
        for k in range(d - 2, -1, -1):
            strides[k] = strides[k + 1] * int(spans[k + 1])
        stride_sum = sum(strides)

        # Vertex r of the simplex is rem0 + canonical[r, rank] with
        # canonical[r, rank] = r - (d+1) [rank > d - r] (permutohedral.cpp), so
        # key_r = key_0 + r * sum(strides) - (d+1) * (sum of the strides of the
        # coordinates whose rank exceeds d - r); ranks are a permutation of 0..d.
        key0 = torch.zeros(n, dtype=torch.int64, device=device)
        for k in range(d):
            key0 += (rem0[k] - low[k]) * strides[k]
        stride_of_rank = torch.zeros((d + 1, n), dtype=torch.int64, device=device)
        for k in range(d):
            stride_of_rank.scatter_(0, rank[k : k + 1], strides[k])
        del rem0, rank
        keys = torch.empty((d + 1, n), dtype=torch.int64, device=device)
        keys[0] = key0
        above = torch.zeros_like(key0)
        for r in range(1, d + 1):
            above += stride_of_rank[d - r + 1]
            torch.add(key0, r * stride_sum, out=keys[r])
            keys[r] -= (d + 1) * above
        del stride_of_rank, above, key0

        # One sort gives the vertices (torch.unique's job), each entry's
        # vertex, and the splat matrix's entries already grouped by vertex.
        # Entry r * N + i is vertex r of point i's simplex.
        flat_keys, order = torch.sort(keys.reshape(-1))
        del keys
        total = flat_keys.numel()
        new = torch.ones(total, dtype=torch.bool, device=device)
        torch.ne(flat_keys[1:], flat_keys[:-1], out=new[1:])
        unique = flat_keys[new]
        m = int(unique.numel())
        self.num_vertices = m
        starts = torch.nonzero(new).reshape(-1)
        vertex_of_sorted = torch.cumsum(new, dim=0) - 1
        del flat_keys, new
        inverse = torch.empty(total, dtype=torch.int64, device=device)
        inverse[order] = vertex_of_sorted
        del vertex_of_sorted
        weights = barycentric.reshape(-1)

        # Splat (M x N), blur (M x M, one per lattice direction) and slice
        # (N x M) are sparse matrices built once: a CSR product is far faster
        # than index_add_/gather on the CPU, and runs on CUDA as is.
        crow = torch.empty(m + 1, dtype=torch.int64, device=device)
        crow[:m] = starts
        crow[m] = total
        self._splat = _csr(crow, torch.remainder(order, n), weights[order], (m, n))
        del order, starts, crow
        # the slice matrix's rows are points: their d+1 entries side by side
        self._slice = _csr(
            torch.arange(0, total + 1, d + 1, device=device),
            inverse.reshape(d + 1, n).t().reshape(-1),
            (weights * self._alpha).reshape(d + 1, n).t().reshape(-1),
            (n, m),
        )
        del inverse, weights, barycentric

        rows = torch.arange(m, device=device)
        blur_crow = torch.arange(0, 3 * m + 1, 3, device=device)
        self._blurs = []
        for j in range(d + 1):
            # n1 = key - 1 everywhere but key[j] + d; n2 = key + 1 but key[j] - d
            shift = -stride_sum + ((d + 1) * strides[j] if j < d else 0)
            n1, has1 = _find(unique, unique + shift)
            # n2 is n1 backwards: when n1(v) = u, then n2(u) = v (one search, not two)
            n2 = torch.full_like(rows, -1)
            n2[n1[has1]] = rows[has1]
            has2 = n2 >= 0
            # an absent neighbour is a zero entry on the diagonal: every row keeps 3 entries
            cols = torch.stack((torch.where(has1, n1, rows), rows, torch.where(has2, n2, rows)), dim=1)
            values = torch.stack((0.5 * has1.to(torch.float32), torch.ones(m, device=device),
                                  0.5 * has2.to(torch.float32)), dim=1)
            self._blurs.append(_csr(blur_crow, cols.reshape(-1), values.reshape(-1), (m, m)))

    # -- filtering ----------------------------------------------------------
    def scale(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """Fold per-point factors into the filter: ``filter(v)`` becomes
        ``after * filter(before * v)`` (``before``, ``after``: N-vectors).

        Kernel normalisation and weights then cost nothing per filtering.
        """
        before = before.reshape(-1).to(torch.float32)
        after = after.reshape(-1).to(torch.float32)
        splat, slice_ = self._splat, self._slice
        self._splat = _csr(
            splat.crow_indices(), splat.col_indices(),
            splat.values() * before[splat.col_indices().long()], splat.shape,
        )
        per_row = slice_.crow_indices().long().diff()
        rows = torch.repeat_interleave(torch.arange(self.num_points, device=after.device), per_row)
        self._slice = _csr(
            slice_.crow_indices(), slice_.col_indices(), slice_.values() * after[rows], slice_.shape
        )

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Splat, blur and slice ``values`` (``N x C``); returns ``N x C``.

        Unnormalised, as ``Permutohedral::compute``: filtering ones gives the
        (approximate) sum of Gaussian weights at each point.
        """
        if values.ndim != 2 or values.shape[0] != self.num_points:
            raise ValueError(f"values must be {self.num_points} x C, got shape {tuple(values.shape)}")
        table = torch.sparse.mm(self._splat, values)
        for blur in self._blurs:
            table = torch.sparse.mm(blur, table)
        return torch.sparse.mm(self._slice, table)


def _find(unique: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each key among the sorted ``unique`` keys, and whether it is there."""
    index = torch.searchsorted(unique, keys).clamp_(max=unique.numel() - 1)
    return index, unique[index] == keys


def _csr(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta state": the part used here is stable
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        # int32 indices take MKL's sparse kernels on the CPU (about 1.6x faster)
        small = max(size) < 2**31 - 1 and cols.numel() < 2**31 - 1
        index_dtype = torch.int32 if small else torch.int64
        return torch.sparse_csr_tensor(
            crow.to(index_dtype), cols.to(index_dtype).contiguous(), values.contiguous(), size,
            check_invariants=False,
        )


def _elevate(features: torch.Tensor) -> torch.Tensor:
    """Embed ``N x d`` features in the d+1 hyperplane (``y = E p``, Adams p. 5); ``(d+1) x N``."""
    n, d = features.shape
    inv_std_dev = math.sqrt(2.0 / 3.0) * (d + 1)
    scale = torch.tensor(
        [1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)],
        dtype=torch.float32, device=features.device,
    )
    cf = features.t() * scale[:, None]  # d x N, contiguous
    # running = sum of cf[j:], accumulated from the end as in the C++ loop
    elevated = torch.empty((d + 1, n), dtype=torch.float32, device=features.device)
    running = torch.zeros(n, dtype=torch.float32, device=features.device)
    elevated[d] = -d * cf[d - 1]
    for j in range(d - 1, 0, -1):
        running += cf[j]
        torch.sub(running, j * cf[j - 1], out=elevated[j])
    running += cf[0]
    elevated[0] = running
    return elevated


def _enclosing_simplex(elevated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest zero-coloured lattice point ``rem0`` and the rank of each coordinate, ``(d+1) x N`` each."""
    d = elevated.shape[0] - 1
    down_factor = torch.tensor(1.0 / (d + 1), dtype=torch.float32)
    v = elevated * down_factor.to(elevated.device)
    up = torch.ceil(v).mul_(d + 1)
    down = torch.floor_(v).mul_(d + 1)
    del v
    rem0_f = torch.where(up - elevated < elevated - down, up, down)
    del up, down
    rem0 = rem0_f.to(torch.int64)
    total = torch.div(rem0.sum(dim=0), d + 1, rounding_mode="floor")  # exact multiples of d+1

    # rank[k] = how many coordinates lie above coordinate k (ties: the later
    # one ranks higher), as the C++ pairwise loop counts
    diff = elevated - rem0_f
    del rem0_f
    # counted in int16 (ranks lie in -d..2d): a quarter of int64's memory traffic
    rank = torch.zeros(rem0.shape, dtype=torch.int16, device=rem0.device)
    for i in range(d):
        for j in range(i + 1, d + 1):
            less = diff[i] < diff[j]
            rank[i] += less
            rank[j] += ~less
    del diff
    rank += total.to(torch.int16)
    wrap = (rank < 0).to(torch.int16) - (rank > d).to(torch.int16)
    wrap *= d + 1
    rank += wrap
    rem0 += wrap
    return rem0, rank.to(torch.int64)


def _barycentric(elevated: torch.Tensor, rem0: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Barycentric weights of each point on its simplex's d+1 vertices (Adams p. 10); ``(d+1) x N``."""
    d1, n = elevated.shape
    d = d1 - 1
    down_factor = torch.tensor(1.0 / (d + 1), dtype=torch.float32, device=elevated.device)
    v = (elevated - rem0.to(torch.float32)) * down_factor
    bary = torch.zeros((d + 2, n), dtype=torch.float32, device=elevated.device)
    bary.scatter_add_(0, d - rank, v)
    bary.scatter_add_(0, d - rank + 1, -v)
    bary[0] += 1.0 + bary[d + 1]
    return bary[: d + 1]

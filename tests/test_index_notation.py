"""Numerical checks of every result in docs/index_notation.md (assignment sections 1-3).

Each closed form is compared with PyTorch autograd in float64 (and the 4-index tensor of
Example 3 also with central differences). Each derivation's sum before sifting is written
as an einsum over explicit Kronecker deltas (np.eye) and compared with the closed form too.
Shapes are non-square wherever the maths allows it: a transposed or mis-ordered answer then
has the wrong shape or the wrong values, and the test fails.
"""

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

# sizes of the doc: x in R^n, X in R^{m x n}, Q in R^{p x q}, V (k, m), W (n, k)
N, M, P, Q_COLS, K = 5, 4, 4, 3, 2


@pytest.fixture
def rng():
    return np.random.default_rng(20211108)


def jac(f, *arrays):
    """Autograd Jacobian of f at float64 NumPy inputs, as NumPy arrays (one per input)."""
    out = jacobian(f, tuple(torch.tensor(a, dtype=torch.float64) for a in arrays))
    return [o.numpy() for o in out]


def delta(n):
    """The Kronecker delta as an array: [I]_ij = delta_ij."""
    return np.eye(n)


def assert_close(actual, expected):
    """Same shape (layout matters) and same values to float64 rounding."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- section 1


def test_sifting_and_derivatives_of_entries(rng):
    a = rng.standard_normal(N)
    # sum_i a_i delta_ik = a_k
    assert_close(np.einsum("i,ik->k", a, delta(N)), a)
    # dx_i/dx_j = delta_ij: the Jacobian of the identity map
    (d,) = jac(lambda x: x * 1.0, rng.standard_normal(N))
    assert_close(d, delta(N))
    # dX_pq/dX_ij = delta_pi delta_qj: four indices, two deltas
    (d4,) = jac(lambda x: x * 1.0, rng.standard_normal((M, N)))
    assert_close(d4, np.einsum("pi,qj->pqij", delta(M), delta(N)))


def test_trace_ones_and_hadamard(rng):
    s, a, b = rng.standard_normal((N, N)), rng.standard_normal((M, N)), rng.standard_normal((M, N))
    assert np.isclose(np.einsum("ii", s), np.trace(s))
    assert np.isclose(np.einsum("ij,ij", delta(N), s), np.trace(s))  # tr(S) = sum_ij delta_ij S_ij
    assert_close(np.ones(N) @ s, s.sum(axis=0))  # 1^T S sums the rows
    assert_close(np.einsum("ij,ij->ij", a, b), a * b)


def test_matrix_product_in_index_form(rng):
    b, c = rng.standard_normal((M, N)), rng.standard_normal((N, K))
    assert_close(np.einsum("ip,pj->ij", b, c), b @ c)


# ---------------------------------------------------------------- section 2


def test_example_1_dot_product(rng):
    x, a = rng.standard_normal((N, 1)), rng.standard_normal((N, 1))  # column vectors
    (grad,) = jac(lambda x: (x.T @ torch.tensor(a)).squeeze(), x)
    # before sifting: sum_k delta_ki a_k
    assert_close(np.einsum("ki,k->i", delta(N), a[:, 0])[:, None], a)
    assert_close(grad, a)  # a column, the shape of x (a^T would be (1, n))


def test_example_2_bilinear_form(rng):
    b, x, c = rng.standard_normal(M), rng.standard_normal((M, N)), rng.standard_normal(N)
    (grad,) = jac(lambda x: torch.tensor(b) @ x @ torch.tensor(c), x)
    closed = np.outer(b, c)  # b c^T, (m, n)
    # before sifting: sum_pq b_p delta_pi delta_qj c_q
    assert_close(np.einsum("p,pi,qj,q->ij", b, delta(M), delta(N), c), closed)
    assert_close(grad, closed)
    assert np.outer(c, b).shape != grad.shape  # c b^T, the transposed layout, is (n, m)


def test_exercise_1_quadratic_form(rng):
    x, b = rng.standard_normal(N), rng.standard_normal((N, N))  # B not symmetric
    (grad,) = jac(lambda x: x @ torch.tensor(b) @ x, x)
    closed = (b + b.T) @ x
    # before sifting: sum_pq (delta_pi B_pq x_q + x_p B_pq delta_qi)
    staged = np.einsum("pi,pq,q->i", delta(N), b, x) + np.einsum("p,pq,qi->i", x, b, delta(N))
    assert_close(staged, closed)
    assert_close(grad, closed)
    assert not np.allclose(grad, 2 * b @ x)  # right only for symmetric B


def dR_dQ(q):
    """Example 3's closed form: dR_ij/dQ_mn = delta_in Q_mj + delta_jn Q_mi, shape (q, q, p, q)."""
    eye = delta(q.shape[1])
    return np.einsum("in,mj->ijmn", eye, q) + np.einsum("jn,mi->ijmn", eye, q)


def test_example_3_full_four_index_tensor(rng):
    q = rng.standard_normal((P, Q_COLS))
    closed = dR_dQ(q)
    assert closed.shape == (Q_COLS, Q_COLS, P, Q_COLS) and closed.size == P * Q_COLS**3  # pq^3 entries
    (auto,) = jac(lambda q: q.T @ q, q)
    assert_close(auto, closed)
    # before sifting k = m: sum_k delta_km delta_in Q_kj + sum_k Q_ki delta_km delta_jn
    eye_p, eye_q = delta(P), delta(Q_COLS)
    staged = np.einsum("km,in,kj->ijmn", eye_p, eye_q, q) + np.einsum("ki,km,jn->ijmn", q, eye_p, eye_q)
    assert_close(staged, closed)
    # central differences, independent of autograd: perturb one Q_mn at a time
    h = 1e-6
    numeric = np.empty_like(closed)
    for m in range(P):
        for n in range(Q_COLS):
            step = np.zeros_like(q)
            step[m, n] = h
            numeric[:, :, m, n] = ((q + step).T @ (q + step) - (q - step).T @ (q - step)) / (2 * h)
    np.testing.assert_allclose(numeric, closed, rtol=0, atol=1e-8)
    # only row i = n and column j = n of each dR/dQ_mn can be nonzero: pq(2q - 1) entries
    assert np.count_nonzero(closed) == P * Q_COLS * (2 * Q_COLS - 1) == 60


def test_example_3_evaluated_entries(rng):
    q = rng.standard_normal((P, Q_COLS))
    (auto,) = jac(lambda q: q.T @ q, q)
    # dR_13/dQ_21 = delta_11 Q_23 + delta_31 Q_21 = Q_23 (1-based in the doc, 0-based here)
    assert auto[0, 2, 1, 0] == pytest.approx(q[1, 2], abs=1e-14)
    assert auto[0, 2, 1, 0] != pytest.approx(q[1, 0])  # not the entry we differentiate by
    # on the diagonal both deltas fire: dR_nn/dQ_mn = 2 Q_mn
    for m in range(P):
        for n in range(Q_COLS):
            assert auto[n, n, m, n] == pytest.approx(2 * q[m, n], abs=1e-14)


def test_exercise_2_trace(rng):
    v, x, w = rng.standard_normal((K, M)), rng.standard_normal((M, N)), rng.standard_normal((N, K))
    (grad,) = jac(lambda x: torch.trace(torch.tensor(v) @ x @ torch.tensor(w)), x)
    closed = v.T @ w.T  # (m, k)(k, n) = (m, n)
    # before sifting: sum_ipq V_ip delta_pa delta_qb W_qi
    assert_close(np.einsum("ip,pa,qb,qi->ab", v, delta(M), delta(N), w), closed)
    assert_close(grad, closed)
    assert_close(grad, (w @ v).T)


# ---------------------------------------------------------------- section 3


def test_chain_rule_with_a_scalar(rng):
    a, b, t = rng.standard_normal((M, N)), rng.standard_normal((M, N)), 0.7
    (dg_dt,) = jac(lambda t: ((torch.tensor(a) + t * torch.tensor(b)) ** 2).sum(), np.array(t))
    mat = a + t * b
    # sum_ij dg/dM_ij dM_ij/dt with dg/dM_ij = 2 M_ij and dM_ij/dt = B_ij
    assert dg_dt == pytest.approx(np.einsum("ij,ij", 2 * mat, b), rel=1e-12)
    assert dg_dt == pytest.approx(2 * np.trace(mat.T @ b), rel=1e-12)


def loss_of_r(r, c):
    """A scalar loss of R with a non-symmetric gradient G = dL/dR."""
    return (torch.tensor(c) * torch.tanh(r)).sum()


def test_chain_rule_through_q_transpose_q(rng):
    q, c = rng.standard_normal((P, Q_COLS)), rng.standard_normal((Q_COLS, Q_COLS))
    (grad,) = jac(lambda q: loss_of_r(q.T @ q, c), q)  # dL/dQ end to end, (p, q)
    (g,) = jac(lambda r: loss_of_r(r, c), q.T @ q)  # G = dL/dR at R = Q^T Q, (q, q)
    assert not np.allclose(g, g.T)
    closed = q @ (g + g.T)
    assert_close(grad, closed)
    # the same as contracting Example 3's full tensor with G: sum_ij G_ij dR_ij/dQ_mn
    assert_close(np.einsum("ij,ijmn->mn", g, dR_dQ(q)), closed)
    assert not np.allclose(grad, 2 * q @ g)  # right only for symmetric G


def test_exercise_2_through_the_chain_rule(rng):
    v, w = rng.standard_normal((K, M)), rng.standard_normal((N, K))
    # dtr(M)/dM_ij = delta_ij, dM_ij/dX_ab = V_ia W_bj
    assert_close(np.einsum("ij,ia,bj->ab", delta(K), v, w), v.T @ w.T)

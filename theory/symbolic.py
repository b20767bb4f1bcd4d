"""Symbolic derivations (sympy) of the closed forms the numeric denoisers implement.

Each function derives its result from first principles -- Bayes' rule with explicit integrals, the
stationarity of a log posterior, the pointwise minimisation of an expected loss, or Tweedie's formula --
and returns it lambdified (numpy), with the argument order in its docstring. The lambdified forms are
the plain formulas (ratios of exponentials, no log-sum-exp): they are references for moderate ``sigma``. Tests compare
these functions with :mod:`theory.gaussian`, :mod:`theory.mixture`, :mod:`theory.ambient` and
:mod:`theory.empirical`. Results are cached: each derivation runs once per process.

Theory: docs/THEORY.md §2.7."""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import sympy as sp

_z = sp.Symbol("z", real=True)
_a = sp.Symbol("a", positive=True)
_b, _c = sp.symbols("b c", real=True)


@lru_cache(maxsize=None)
def _moment(k: int) -> sp.Expr:
    """``int z^k exp(-a z^2 + b z + c) dz`` over the real line, ``a > 0`` (sympy's integral, simplified)."""
    return sp.simplify(sp.integrate(_z ** k * sp.exp(-_a * _z ** 2 + _b * _z + _c), (_z, -sp.oo, sp.oo)))


def _integrate(weight: sp.Expr, exponent: sp.Expr, var: sp.Symbol, k: int) -> sp.Expr:
    """``int var^k weight exp(exponent) dvar`` for ``exponent`` quadratic in ``var`` (negative leading term)."""
    poly = sp.Poly(sp.expand(exponent), var)
    coeff = {_a: -poly.coeff_monomial(var ** 2), _b: poly.coeff_monomial(var), _c: poly.coeff_monomial(1)}
    return weight * _moment(k).subs(coeff, simultaneous=True)


def _normal(z: sp.Expr, mean: sp.Expr, var: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """``N(z; mean, var)`` as ``(prefactor, exponent)``."""
    return 1 / sp.sqrt(2 * sp.pi * var), -(z - mean) ** 2 / (2 * var)


def _posterior_moment(components: list[tuple[sp.Expr, sp.Expr, sp.Expr]], x: sp.Symbol, sigma: sp.Symbol,
                      k: int) -> sp.Expr:
    """``E[x0^k | x]`` for the prior ``sum_j w_j N(m_j, v_j)`` (``components = [(w_j, m_j, v_j)]``) and
    ``x = x0 + sigma z``, by Bayes' rule: ``int x0^k p(x0) N(x; x0, sigma^2) dx0 / int p(x0) N(x; x0, sigma^2) dx0``."""
    x0 = sp.Symbol("x0", real=True)
    lik_w, lik_e = _normal(x, x0, sigma ** 2)
    num = den = sp.Integer(0)
    for w, m, v in components:
        pw, pe = _normal(x0, m, v)
        num += _integrate(w * pw * lik_w, pe + lik_e, x0, k)
        den += _integrate(w * pw * lik_w, pe + lik_e, x0, 0)
    return num / den


@lru_cache(maxsize=None)
def gaussian_posterior_mean_1d() -> Callable:
    """``f(x, sigma, mu, v) = E[x0 | x]`` for ``x0 ~ N(mu, v)``, derived by integration (Bayes' rule)."""
    x, mu = sp.symbols("x mu", real=True)
    sigma, v = sp.symbols("sigma v", positive=True)
    expr = sp.simplify(_posterior_moment([(sp.Integer(1), mu, v)], x, sigma, 1))
    return sp.lambdify((x, sigma, mu, v), expr, "numpy")


@lru_cache(maxsize=None)
def gaussian_posterior_mean(d: int) -> Callable:
    """``f(x, mu, cov, sigma) -> [D_1..D_d]`` for ``x0 ~ N(mu, cov)`` in ``d`` dimensions (``x``, ``mu``
    length-``d`` sequences, ``cov`` nested ``d x d``): the mode of the Gaussian posterior, i.e. the root of
    ``grad_x0 [log N(x0; mu, cov) + log N(x; x0, sigma^2 I)]``, solved by sympy (the mean equals the mode)."""
    xs, mus, x0 = (sp.symbols(f"{p}1:{d + 1}", real=True) for p in ("x", "mu", "x0_"))
    sigma = sp.Symbol("sigma", positive=True)
    cov = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"s{min(i, j) + 1}{max(i, j) + 1}", real=True))
    r0 = sp.Matrix(x0) - sp.Matrix(mus)
    log_post = -(r0.T * cov.inv() * r0)[0] / 2 - sum((xi - zi) ** 2 for xi, zi in zip(xs, x0)) / (2 * sigma ** 2)
    sol = sp.solve([sp.diff(log_post, zi) for zi in x0], x0, dict=True)[0]
    expr = [sp.simplify(sol[zi]) for zi in x0]
    return sp.lambdify((list(xs), list(mus), cov.tolist(), sigma), expr, "numpy")


@lru_cache(maxsize=None)
def mixture_posterior_mean_1d() -> Callable:
    """``f(x, sigma, p, m1, v1, m2, v2) = E[x0 | x]`` for ``x0 ~ p N(m1, v1) + (1 - p) N(m2, v2)``, by integration."""
    x, m1, m2 = sp.symbols("x m1 m2", real=True)
    sigma, p, v1, v2 = sp.symbols("sigma p v1 v2", positive=True)
    expr = _posterior_moment([(p, m1, v1), (1 - p, m2, v2)], x, sigma, 1)
    return sp.lambdify((x, sigma, p, m1, v1, m2, v2), expr, "numpy")


def tweedie(log_density: sp.Expr, x: sp.Symbol, sigma: sp.Symbol) -> sp.Expr:
    """Tweedie's formula ``D = x + sigma^2 d/dx log p_sigma(x)`` for a 1D noisy log-density expression."""
    return x + sigma ** 2 * sp.diff(log_density, x)


@lru_cache(maxsize=None)
def tweedie_mixture_1d() -> Callable:
    """``f(x, sigma, p, m1, v1, m2, v2)``: Tweedie applied to ``p_sigma = p N(m1, v1 + s^2) + (1 - p) N(m2, v2 + s^2)``."""
    x, m1, m2 = sp.symbols("x m1 m2", real=True)
    sigma, p, v1, v2 = sp.symbols("sigma p v1 v2", positive=True)
    density = sum(w * c * sp.exp(e) for w, (c, e) in ((p, _normal(x, m1, v1 + sigma ** 2)),
                                                      (1 - p, _normal(x, m2, v2 + sigma ** 2))))
    return sp.lambdify((x, sigma, p, m1, v1, m2, v2), tweedie(sp.log(density), x, sigma), "numpy")


@lru_cache(maxsize=None)
def tweedie_empirical_1d(k: int) -> Callable:
    """``f(x, sigma, ys)`` (``ys`` length ``k``): Tweedie on ``p_sigma = (1/k) sum_i N(x; y_i, sigma^2)``."""
    x = sp.Symbol("x", real=True)
    sigma = sp.Symbol("sigma", positive=True)
    ys = sp.symbols(f"y1:{k + 1}", real=True)
    density = sum(c * sp.exp(e) for c, e in (_normal(x, y, sigma ** 2) for y in ys)) / k
    return sp.lambdify((x, sigma, list(ys)), tweedie(sp.log(density), x, sigma), "numpy")


def _ambient_argmin(noisy_moments: Callable[[int], sp.Expr], x: sp.Symbol, sigma: sp.Expr, tau: sp.Expr) -> sp.Expr:
    """Minimise ``E[(a f + (1 - a) x - y)^2 | x_t = x]`` over ``f`` (``a = tau^2 / sigma^2``), given
    ``noisy_moments(k) = E[y^k | x_t = x]``: the root of the derivative of the expanded quadratic."""
    f = sp.Symbol("f", real=True)
    a = tau ** 2 / sigma ** 2
    u = a * f + (1 - a) * x
    loss = u ** 2 - 2 * u * noisy_moments(1) + noisy_moments(2)  # E[(u - y)^2 | x_t = x]
    return sp.solve(sp.diff(loss, f), f)[0]


@lru_cache(maxsize=None)
def ambient_minimizer_empirical_1d(k: int) -> Callable:
    """``f(x, sigma, sigma_n, ys)``: minimiser of the expected ambient loss when the noisy items are ``ys``
    (length ``k``, equally likely) and ``x_t = y + tau z``, ``tau^2 = sigma^2 - sigma_n^2``."""
    x = sp.Symbol("x", real=True)
    sigma, sigma_n = sp.symbols("sigma sigma_n", positive=True)
    ys = sp.symbols(f"y1:{k + 1}", real=True)
    tau = sp.sqrt(sigma ** 2 - sigma_n ** 2)
    lik = [sp.exp(-(x - y) ** 2 / (2 * tau ** 2)) for y in ys]

    def moments(j: int) -> sp.Expr:
        return sum(w * y ** j for w, y in zip(lik, ys)) / sum(lik)

    return sp.lambdify((x, sigma, sigma_n, list(ys)), _ambient_argmin(moments, x, sigma, tau), "numpy")


@lru_cache(maxsize=None)
def ambient_minimizer_gaussian() -> tuple[Callable, sp.Expr]:
    """Ambient minimiser for the population ``x0 ~ N(mu, v)``, ``y = x0 + sigma_n eps``, at ``sigma > sigma_n``.

    Returns ``(f(x, tau, sigma_n, mu, v), residual)``: ``residual`` is the simplified difference between the
    minimiser and the clean posterior mean ``E[x0 | x0 + sigma z = x]`` (both derived by integration,
    with ``sigma^2 = tau^2 + sigma_n^2``); it simplifies to 0, which is the double-Tweedie identity.
    """
    x, mu = sp.symbols("x mu", real=True)
    tau, sigma_n, v = sp.symbols("tau sigma_n v", positive=True)
    sigma = sp.sqrt(tau ** 2 + sigma_n ** 2)
    noisy = [(sp.Integer(1), mu, v + sigma_n ** 2)]
    f = sp.simplify(_ambient_argmin(lambda j: _posterior_moment(noisy, x, tau, j), x, sigma, tau))
    clean = _posterior_moment([(sp.Integer(1), mu, v)], x, sigma, 1)
    return sp.lambdify((x, tau, sigma_n, mu, v), f, "numpy"), sp.simplify(f - clean)

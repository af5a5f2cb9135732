"""Training a dense (or locally connected) twin INSIDE the conv structure.

Let ``E`` embed conv params into the twin (``conv_to_dense``: ``w -> T(w)``, bias
copied to every position), ``E*`` its adjoint (sums copies) and ``N`` the
nearest projection (averages copies, drops off-structure weights; see
:mod:`convjax.nn.family`).

Plain SGD on the conv filter is ``w' = w - lr * grad_w``, and by the chain rule
``grad_w = E*(G)`` with ``G`` the gradient of the twin at ``D = E(w)``. So the twin
follows the conv layer exactly when it moves by

    ``D' = D - lr * E(E*(G))``            (the TIED gradient, :func:`tied_gradient`)

NOT by the orthogonal projection ``E(N(G)) = E((E*E)^-1 E*(G))``
(:func:`projected_gradient`): that one divides the step of each weight by its
number of copies, i.e. it is conv SGD with a per-tap learning rate ``lr/copies``
(steepest descent in the twin's Frobenius metric instead of the filter's). Both
keep structural zeros at zero and tied weights equal; only the tied gradient
reproduces the conv layer's SGD trajectory. Because ``E E*`` is linear, the tied
gradient followed by any optimizer that is linear in the updates (``optax.sgd``
with or without momentum or Nesterov) also reproduces that optimizer on the conv
layer; an adaptive optimizer (Adam, ...) works per entry and does not.

Both are optax ``GradientTransformation`` s to chain BEFORE the optimizer::

    opt = optax.chain(tied_gradient(s), optax.sgd(lr))

:func:`project_params` is the param-space alternative: ``E(N(D))`` after each step.

``structures`` says which params to treat: a
:class:`~convjax.tying.ConvStructure` when the params are one layer's dict, or a
tuple/list aligned with :func:`~convjax.nn.serial` params holding a structure for
each layer to keep inside the conv family and ``None`` for the others (nested
tuples for nested ``serial``): :func:`convjax.nn.structures` gives it for a whole
model. Each treated layer's params may be dense or locally connected (read from
the shape of ``w``); conv params pass unchanged.
"""

from __future__ import annotations

import optax

from convjax import _checks
from convjax.nn import family
from convjax.tying import ConvStructure

WITHIN = ("conv", "local")
_ORDER = {"conv": 0, "local": 1, "dense": 2}


def _tied_map(p, s: ConvStructure, within: str, fn: str):
    """``E E*`` from the kind of ``p`` down to ``within`` and back up."""
    kind = family.kind_of(p, s, fn=fn)
    if _ORDER[kind] <= _ORDER[within]:
        return dict(p)
    down = family.move(p, s, within, method="adjoint")
    return family.move(down, s, kind)


def _projected_map(p, s: ConvStructure, within: str, fn: str):
    """``E N``: the nearest point of the ``within`` family, embedded back."""
    kind = family.kind_of(p, s, fn=fn)
    if _ORDER[kind] <= _ORDER[within]:
        return dict(p)
    down = family.move(p, s, within, method="nearest")
    return family.move(down, s, kind)


def _transformation(fn: str, layer_map, structures, within: str):
    family.check_structures(fn, structures)
    within = _checks.check_choice(fn, "within", within, WITHIN)

    def apply_map(tree):
        return family.map_structures(fn, lambda p, s: layer_map(p, s, within, fn), tree, structures)

    def init_fn(params):
        apply_map(params)  # checks the params fit the structures, at init time
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return apply_map(updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def tied_gradient(structures, *, within: str = "conv") -> optax.GradientTransformation:
    """The TIED gradient ``E(E*(G))``: the twin's update that reproduces SGD on the
    conv layer (``within="conv"``) or on the locally connected layer
    (``within="local"``, for dense params).

    Args:
      structures: a ConvStructure, or a tuple/list of ConvStructure/None aligned
        with serial params (see the module docstring).
      within: the family to stay in: ``"conv"`` (zeros stay zero, tied weights move
        together) or ``"local"`` (zeros stay zero, no tying).

    Returns:
      An optax ``GradientTransformation`` (stateless); chain it before the optimizer.

    Example:
      >>> import jax, optax, convjax
      >>> conv = convjax.nn.Conv1D(2, 3)
      >>> s = convjax.nn.structure(conv, (8, 1))
      >>> opt = optax.chain(tied_gradient(s), optax.sgd(0.1))
    """
    return _transformation("tied_gradient", _tied_map, structures, within)


def projected_gradient(structures, *, within: str = "conv") -> optax.GradientTransformation:
    """The orthogonally PROJECTED gradient ``E(N(G))``. Keeps the twin inside the
    family like :func:`tied_gradient`, but is conv SGD with each weight's step
    divided by its number of copies (not the conv trajectory). Arguments as
    :func:`tied_gradient`."""
    return _transformation("projected_gradient", _projected_map, structures, within)


def project_params(params, structures, *, within: str = "conv"):
    """Projects params onto the family: ``E(N(p))`` for each treated layer (the
    nearest dense/local twin of a conv, or of a locally connected layer for
    ``within="local"``). Idempotent. Arguments as :func:`tied_gradient`."""
    fn = "project_params"
    family.check_structures(fn, structures)
    within = _checks.check_choice(fn, "within", within, WITHIN)
    return family.map_structures(
        fn, lambda p, s: _projected_map(p, s, within, fn), params, structures
    )


__all__ = ["WITHIN", "project_params", "projected_gradient", "tied_gradient"]

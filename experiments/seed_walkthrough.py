"""The question convjax answers, executed: how a convolution replaces a matrix product.

x = [1, 2, 3, 4], w = [5, 6, 7]: full / valid / same convolution, cross-correlation,
and the dense matrix T(w) with T(w) @ x == conv(x, w).
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import convjax  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="results")
    parser.parse_args(argv)
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    w = jnp.array([5.0, 6.0, 7.0])
    out = {}
    for mode in ("full", "valid", "same"):
        out[f"convolve_{mode}"] = np.asarray(convjax.convolve(x, w, mode)).tolist()
    out["correlate_valid"] = np.asarray(convjax.correlate(x, w, "valid")).tolist()
    for name, value in out.items():
        print(f"{name:>16}: {value}")
    w3 = w.reshape(3, 1, 1)
    for padding, flip in (("full", True), ("valid", True), ("valid", False)):
        t = convjax.conv_matrix(w3, 4, padding=padding, flip=flip)
        kind = "convolution" if flip else "cross-correlation"
        print(f"\nT(w) for {padding} {kind}:\n{np.asarray(t)}")
        print("T(w) @ x =", np.asarray(t @ x).tolist())
    return out


if __name__ == "__main__":
    main()

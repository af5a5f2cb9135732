"""numpy's own tests of ``convolve`` / ``correlate``, pointed at convjax.

Vendored from numpy 2.4.6, ``numpy/_core/tests/test_numeric.py``, classes
``TestCorrelate`` and ``TestConvolve``. The only change is the function under
test: ``np.correlate`` -> ``correlate`` and ``np.convolve`` -> ``convolve`` (from
convjax); numpy still builds the inputs and checks the results. Omitted:
``TestCorrelate.test_object`` (``Decimal`` inputs, object dtype, which jax arrays do
not have). The tests use float64 inputs; tests/conftest.py enables x64 for the
whole suite, so convjax computes them in float64 as numpy does.

The numpy code below is under numpy's license (BSD-3-Clause):

Copyright (c) 2005-2025, NumPy Developers.
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are
met:

    * Redistributions of source code must retain the above copyright
       notice, this list of conditions and the following disclaimer.

    * Redistributions in binary form must reproduce the above
       copyright notice, this list of conditions and the following
       disclaimer in the documentation and/or other materials provided
       with the distribution.

    * Neither the name of the NumPy Developers nor the names of any
       contributors may be used to endorse or promote products derived
       from this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
"AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR
A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT
OWNER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,
SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT
LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY
THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
(INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_almost_equal, assert_array_equal, assert_raises

from convjax import convolve, correlate


class TestCorrelate:
    def _setup(self, dt):
        self.x = np.array([1, 2, 3, 4, 5], dtype=dt)
        self.xs = np.arange(1, 20)[::3]
        self.y = np.array([-1, -2, -3], dtype=dt)
        self.z1 = np.array([-3.0, -8.0, -14.0, -20.0, -26.0, -14.0, -5.0], dtype=dt)
        self.z1_4 = np.array([-2.0, -5.0, -8.0, -11.0, -14.0, -5.0], dtype=dt)
        self.z1r = np.array([-15.0, -22.0, -22.0, -16.0, -10.0, -4.0, -1.0], dtype=dt)
        self.z2 = np.array([-5.0, -14.0, -26.0, -20.0, -14.0, -8.0, -3.0], dtype=dt)
        self.z2r = np.array([-1.0, -4.0, -10.0, -16.0, -22.0, -22.0, -15.0], dtype=dt)
        self.zs = np.array(
            [-3.0, -14.0, -30.0, -48.0, -66.0, -84.0, -102.0, -54.0, -19.0], dtype=dt
        )

    def test_float(self):
        self._setup(float)
        z = correlate(self.x, self.y, "full")
        assert_array_almost_equal(z, self.z1)
        z = correlate(self.x, self.y[:-1], "full")
        assert_array_almost_equal(z, self.z1_4)
        z = correlate(self.y, self.x, "full")
        assert_array_almost_equal(z, self.z2)
        z = correlate(self.x[::-1], self.y, "full")
        assert_array_almost_equal(z, self.z1r)
        z = correlate(self.y, self.x[::-1], "full")
        assert_array_almost_equal(z, self.z2r)
        z = correlate(self.xs, self.y, "full")
        assert_array_almost_equal(z, self.zs)

    # test_object omitted: Decimal inputs (object dtype).

    def test_no_overwrite(self):
        d = np.ones(100)
        k = np.ones(3)
        correlate(d, k)
        assert_array_equal(d, np.ones(100))
        assert_array_equal(k, np.ones(3))

    def test_complex(self):
        x = np.array([1, 2, 3, 4 + 1j], dtype=complex)
        y = np.array([-1, -2j, 3 + 1j], dtype=complex)
        r_z = np.array([3 - 1j, 6, 8 + 1j, 11 + 5j, -5 + 8j, -4 - 1j], dtype=complex)
        r_z = r_z[::-1].conjugate()
        z = correlate(y, x, mode="full")
        assert_array_almost_equal(z, r_z)

    def test_zero_size(self):
        with pytest.raises(ValueError):
            correlate(np.array([]), np.ones(1000), mode="full")
        with pytest.raises(ValueError):
            correlate(np.ones(1000), np.array([]), mode="full")

    def test_mode(self):
        d = np.ones(100)
        k = np.ones(3)
        default_mode = correlate(d, k, mode="valid")  # noqa: F841 (as in numpy)
        with assert_raises(ValueError):
            correlate(d, k, mode="v")
        # integer mode
        with assert_raises(ValueError):
            correlate(d, k, mode=-1)
        # assert_array_equal(np.correlate(d, k, mode=), default_mode)
        # illegal arguments
        with assert_raises(TypeError):
            correlate(d, k, mode=None)


class TestConvolve:
    def test_object(self):
        d = [1.0] * 100
        k = [1.0] * 3
        assert_array_almost_equal(convolve(d, k)[2:-2], np.full(98, 3))

    def test_no_overwrite(self):
        d = np.ones(100)
        k = np.ones(3)
        convolve(d, k)
        assert_array_equal(d, np.ones(100))
        assert_array_equal(k, np.ones(3))

    def test_mode(self):
        d = np.ones(100)
        k = np.ones(3)
        default_mode = convolve(d, k, mode="full")
        with assert_raises(ValueError):
            convolve(d, k, mode="f")
        # integer mode
        with assert_raises(ValueError):
            convolve(d, k, mode=-1)
        assert_array_equal(convolve(d, k, mode=2), default_mode)
        # illegal arguments
        with assert_raises(TypeError):
            convolve(d, k, mode=None)

    def test_convolve_empty_input_error_message(self):
        """
        Test that convolve raises the correct error message when inputs are empty.
        Regression test for gh-30272 (variable swapping bug).
        """
        with pytest.raises(ValueError, match="a cannot be empty"):
            convolve(np.array([]), np.array([1, 2]))

        with pytest.raises(ValueError, match="v cannot be empty"):
            convolve(np.array([1, 2]), np.array([]))

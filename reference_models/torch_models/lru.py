"""The Linear Recurrent Unit (Orvieto et al., 2023) in the form CompreSSM compresses.

lambda = exp(-exp(nu_log) + i exp(theta_log)),   gamma = exp(gamma_log)
x_k = lambda * x_(k-1) + (gamma[:, None] * (B_re + i B_im)) u_k
y_k = Re((C_re + i C_im) x_k) + D * u_k
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import compressm_core as cc

from .._indices import check_lru_ring
from ._layers import checked_system, complex_dtype, rebuild
from .scan import diagonal_scan


class LRU(nn.Module):
    """A diagonal complex MIMO recurrence: (batch, L, d_model) real -> (batch, L, d_model) real.

    Parameters (all real): ``nu_log``, ``theta_log``, ``gamma_log`` (n,); ``B_re``, ``B_im``
    (n, H); ``C_re``, ``C_im`` (H, n); ``D`` (H,). Poles are initialised uniformly on the
    ring ``r_min <= |lambda| <= r_max`` with phases in [0, max_phase]; ``gamma`` to
    ``sqrt(1 - |lambda|^2)``; B ~ N(0, 1/(2H)) and C ~ N(0, 1/n) per real/imaginary part.
    """

    real_output = True

    def __init__(
        self,
        d_model: int,
        state_dim: int,
        *,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_lru_ring(r_min, r_max)
        self.d_model = d_model
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        factory = {"device": device, "dtype": dtype}
        radius_u = torch.rand(state_dim, **factory)
        phase_u = torch.rand(state_dim, **factory)
        nu = -0.5 * torch.log(radius_u * (r_max**2 - r_min**2) + r_min**2)
        self.nu_log = nn.Parameter(torch.log(nu))
        self.theta_log = nn.Parameter(torch.log(max_phase * phase_u))
        self.gamma_log = nn.Parameter(0.5 * torch.log(-torch.expm1(-2 * nu)))
        self.B_re = nn.Parameter(
            torch.randn(state_dim, d_model, **factory) / math.sqrt(2 * d_model)
        )
        self.B_im = nn.Parameter(
            torch.randn(state_dim, d_model, **factory) / math.sqrt(2 * d_model)
        )
        self.C_re = nn.Parameter(torch.randn(d_model, state_dim, **factory) / math.sqrt(state_dim))
        self.C_im = nn.Parameter(torch.randn(d_model, state_dim, **factory) / math.sqrt(state_dim))
        self.D = nn.Parameter(torch.randn(d_model, **factory))

    @property
    def state_dim(self) -> int:
        return self.nu_log.shape[0]

    def hyper_parameters(self) -> dict:
        """The constructor arguments besides state_dim, device and dtype."""
        return {
            "d_model": self.d_model,
            "r_min": self.r_min,
            "r_max": self.r_max,
            "max_phase": self.max_phase,
        }

    def poles(self) -> Tensor:
        """lambda, (n,) complex."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def input_matrix(self) -> Tensor:
        """gamma[:, None] * (B_re + i B_im), (n, H) complex."""
        return torch.exp(self.gamma_log)[:, None] * torch.complex(self.B_re, self.B_im)

    def forward(self, u: Tensor) -> Tensor:
        """(batch, L, H) real -> (batch, L, H) real."""
        gamma = torch.exp(self.gamma_log)[:, None]
        drive = torch.complex(u @ (gamma * self.B_re).T, u @ (gamma * self.B_im).T)
        x = diagonal_scan(self.poles(), drive)
        return x.real @ self.C_re.T - x.imag @ self.C_im.T + self.D * u

    def ssm_system(self) -> cc.DiagonalStateSpace:
        """``DiagonalStateSpace(lambda, gamma B, C, diag(D))``, complex, differentiable."""
        dtype = complex_dtype(self.nu_log.dtype)
        return cc.DiagonalStateSpace(
            self.poles(),
            self.input_matrix(),
            torch.complex(self.C_re, self.C_im),
            torch.diag(self.D).to(dtype),
        )

    def with_system(self, system: cc.DiagonalStateSpace) -> LRU:
        """A new LRU of order ``system.n`` whose recurrence is ``system`` (``self`` unchanged).

        nu_log = log(-log|p|), theta_log = log(angle(p) mod 2 pi) with angle 0 mapped to
        2 pi (so real positive poles stay exact), gamma = sqrt(1 - |p|^2), B = system.B / gamma,
        D = Re(diag(system.D)). Raises ValueError when a pole has |p| >= 1 or p = 0.
        """
        poles, B, C, D = checked_system(system, self.d_model)
        modulus = poles.abs()
        phase = torch.remainder(torch.angle(poles), 2 * math.pi)
        phase = torch.where(phase == 0, torch.full_like(phase, 2 * math.pi), phase)
        gamma = torch.sqrt(-torch.expm1(2 * torch.log(modulus)))
        B = B / gamma[:, None]
        values = {
            "nu_log": torch.log(-torch.log(modulus)),
            "theta_log": torch.log(phase),
            "gamma_log": torch.log(gamma),
            "B_re": B.real,
            "B_im": B.imag,
            "C_re": C.real,
            "C_im": C.imag,
            "D": D,
        }
        return rebuild(self, system.n, values)

"""An S5-style MIMO layer (Smith et al., 2023): continuous-time diagonal complex Lambda, ZOH.

    Lambda = -exp(Lambda_re_log) + i Lambda_im,   step = exp(log_step)      (per state)
    Abar = exp(Lambda * step),   Bbar = ((Abar - 1) / Lambda)[:, None] * (B_re + i B_im)
    x_k = Abar * x_(k-1) + Bbar u_k,   y_k = Re((C_re + i C_im) x_k) + D * u_k

S5 keeps conjugate-symmetric states and reads ``2 Re(C x)``; here the factor 2 is part of C.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import compressm_core as cc

from ._layers import checked_system, complex_dtype, rebuild
from .scan import diagonal_scan


class S5(nn.Module):
    """A diagonal continuous-time MIMO SSM with zero-order hold, (batch, L, H) -> (batch, L, H).

    Parameters (all real): ``Lambda_re_log``, ``Lambda_im``, ``log_step`` (n,); ``B_re``,
    ``B_im`` (n, H); ``C_re``, ``C_im`` (H, n); ``D`` (H,). Initialisation (S4D-Lin):
    Lambda = -0.5 + i pi k for k = 0..n-1, step log-uniform in [step_min, step_max],
    B ~ N(0, 1/(2H)) and C ~ N(0, 1/n) per real/imaginary part.
    """

    real_output = True

    def __init__(
        self,
        d_model: int,
        state_dim: int,
        *,
        step_min: float = 1e-3,
        step_max: float = 1e-1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not 0 < step_min <= step_max:
            msg = f"need 0 < `step_min` <= `step_max`, got step_min={step_min}, step_max={step_max}"
            raise ValueError(msg)
        self.d_model = d_model
        self.step_min, self.step_max = step_min, step_max
        factory = {"device": device, "dtype": dtype}
        log_span = math.log(step_max) - math.log(step_min)
        self.Lambda_re_log = nn.Parameter(torch.full((state_dim,), math.log(0.5), **factory))
        self.Lambda_im = nn.Parameter(math.pi * torch.arange(state_dim, **factory))
        self.B_re = nn.Parameter(
            torch.randn(state_dim, d_model, **factory) / math.sqrt(2 * d_model)
        )
        self.B_im = nn.Parameter(
            torch.randn(state_dim, d_model, **factory) / math.sqrt(2 * d_model)
        )
        self.C_re = nn.Parameter(torch.randn(d_model, state_dim, **factory) / math.sqrt(state_dim))
        self.C_im = nn.Parameter(torch.randn(d_model, state_dim, **factory) / math.sqrt(state_dim))
        self.D = nn.Parameter(torch.randn(d_model, **factory))
        self.log_step = nn.Parameter(
            math.log(step_min) + log_span * torch.rand(state_dim, **factory)
        )

    @property
    def state_dim(self) -> int:
        return self.Lambda_re_log.shape[0]

    def hyper_parameters(self) -> dict:
        """The constructor arguments besides state_dim, device and dtype."""
        return {"d_model": self.d_model, "step_min": self.step_min, "step_max": self.step_max}

    def continuous_poles(self) -> Tensor:
        """Lambda, (n,) complex."""
        return torch.complex(-torch.exp(self.Lambda_re_log), self.Lambda_im)

    def discretised(self) -> tuple[Tensor, Tensor]:
        """Zero-order hold: ``(Abar (n,), Bbar (n, H))``, complex."""
        Lambda = self.continuous_poles()
        Abar = torch.exp(Lambda * torch.exp(self.log_step))
        Bbar = ((Abar - 1) / Lambda)[:, None] * torch.complex(self.B_re, self.B_im)
        return Abar, Bbar

    def forward(self, u: Tensor) -> Tensor:
        """(batch, L, H) real -> (batch, L, H) real."""
        Abar, Bbar = self.discretised()
        drive = torch.complex(u @ Bbar.real.T, u @ Bbar.imag.T)
        x = diagonal_scan(Abar, drive)
        return x.real @ self.C_re.T - x.imag @ self.C_im.T + self.D * u

    def ssm_system(self) -> cc.DiagonalStateSpace:
        """``DiagonalStateSpace(Abar, Bbar, C, diag(D))``, complex, differentiable."""
        Abar, Bbar = self.discretised()
        dtype = complex_dtype(self.Lambda_re_log.dtype)
        return cc.DiagonalStateSpace(
            Abar, Bbar, torch.complex(self.C_re, self.C_im), torch.diag(self.D).to(dtype)
        )

    def with_system(self, system: cc.DiagonalStateSpace) -> S5:
        """A new S5 of order ``system.n`` whose discretised recurrence is ``system``.

        Every new state gets the same step, exp(mean of the old ``log_step``) (balanced states
        mix the old ones, so no old step belongs to them); then Lambda = log(p) / step
        (principal logarithm) and B = system.B * Lambda / (p - 1), so that the zero-order hold
        gives back exactly (p, system.B). Raises ValueError when a pole has |p| >= 1 or p = 0.
        """
        poles, B, C, D = checked_system(system, self.d_model)
        log_step = self.log_step.detach().mean().to(poles.real.dtype)
        Lambda = torch.log(poles) / torch.exp(log_step)
        B = B * (Lambda / (poles - 1))[:, None]
        values = {
            "Lambda_re_log": torch.log(-Lambda.real),
            "Lambda_im": Lambda.imag,
            "B_re": B.real,
            "B_im": B.imag,
            "C_re": C.real,
            "C_im": C.imag,
            "D": D,
            "log_step": log_step.expand(system.n),
        }
        return rebuild(self, system.n, values)

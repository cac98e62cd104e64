"""LARS (You et al. 2017, "Large batch training of convolutional networks") as SimCLR, BYOL and Barlow Twins use it.

For a parameter w with gradient g in an adapted group: d = g + wd * w, then d is scaled by the trust ratio
eta * ||w|| / ||d|| (1 when either norm is 0), and SGD with momentum follows: v <- mu * v + d, w <- w - lr * v
(Nesterov: w <- w - lr * (d + mu * v)). Groups with `lars_adapt=False` (BatchNorm and biases, see
optim.parameter_groups) take plain momentum SGD with their own weight decay (0 there).
"""

from __future__ import annotations

import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, nesterov: bool = False):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coefficient": trust_coefficient, "nesterov": nesterov, "lars_adapt": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad.add(param, alpha=group["weight_decay"]) if group["weight_decay"] else \
                    param.grad.clone()
                if group["lars_adapt"]:
                    param_norm, update_norm = torch.linalg.vector_norm(param), torch.linalg.vector_norm(update)
                    ratio = torch.where((param_norm > 0) & (update_norm > 0),
                                        group["trust_coefficient"] * param_norm / update_norm,
                                        torch.ones_like(param_norm))
                    update.mul_(ratio)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(update)
                buffer = state["momentum_buffer"]
                step = update.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                param.add_(step, alpha=-group["lr"])
        return loss

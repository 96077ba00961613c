"""Injected failures: the dice deciding, per API call, whether it fails or is slow. Seedable."""
from __future__ import annotations

import random

from .config import EmulatorConfig


class Faults:
    def __init__(self, seed: int | None = None):
        self.random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self.random.seed(seed)

    def injected_status(self, config: EmulatorConfig) -> int | None:
        """500 or 503 (backendError), 429 (rateLimitExceeded), or None for a normal answer."""
        roll = self.random.random()
        if roll < config.error_rate_5xx:
            return self.random.choice((500, 503))
        if roll < config.error_rate_5xx + config.error_rate_429:
            return 429
        return None

    def extra_delay_s(self, config: EmulatorConfig) -> float:
        if config.slow_rate > 0 and self.random.random() < config.slow_rate:
            return config.slow_ms / 1000.0
        return 0.0

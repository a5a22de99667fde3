"""Cost of a call from its token counts and a per-model price table (USD per 1M tokens).

The table starts from :data:`DEFAULT_PRICES` (list prices of a few common models; check them
against your contract). ``LLMSIGHT_PRICES`` points to a JSON file ``{"model": [in, out]}`` that
overrides or extends it, and ``init(prices={...})`` overrides both. A model name matches an
entry exactly or, failing that, by the longest entry it starts with, so dated snapshots such as
``gpt-4o-2024-08-06`` find ``gpt-4o``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("llmsight")

# (input, output) in USD per 1M tokens.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o3-mini": (1.10, 4.40),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-opus": (15.00, 75.00),
}


def _price_pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Mapping):
        value = (value.get("input"), value.get("output"))
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        pair = (float(value[0]), float(value[1]))
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(p) and p >= 0 for p in pair):
        return None
    return pair


class PriceTable:
    """Model name -> (input, output) USD per 1M tokens, with longest-prefix lookup."""

    def __init__(self, prices: Mapping[str, Any]) -> None:
        self._prices: dict[str, tuple[float, float]] = {}
        for model, value in prices.items():
            pair = _price_pair(value)
            if pair is None or not isinstance(model, str):
                log.warning("llmsight: ignoring the price of %r: expected [input, output] USD per 1M tokens", model)
                continue
            self._prices[model] = pair
        # Longest first, so "gpt-4o-mini-2024" matches "gpt-4o-mini" before "gpt-4o".
        self._prefixes = sorted(self._prices, key=len, reverse=True)
        self._cache: dict[str, tuple[float, float] | None] = {}

    def lookup(self, model: str) -> tuple[float, float] | None:
        if model in self._cache:
            return self._cache[model]
        found = self._prices.get(model)
        if found is None:
            found = next((self._prices[p] for p in self._prefixes if model.startswith(p)), None)
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found

    def cost(self, model: str | None, tokens_in: int | None, tokens_out: int | None) -> float | None:
        """USD for one call, or None when the model is unknown or no token count is known."""
        if not model or (tokens_in is None and tokens_out is None):
            return None
        pair = self.lookup(model)
        if pair is None:
            return None
        return ((tokens_in or 0) * pair[0] + (tokens_out or 0) * pair[1]) / 1_000_000


def load_prices(path: str, overrides: Mapping[str, Any] | None) -> PriceTable:
    """The defaults, then the JSON file at ``path`` (if any), then ``overrides``."""
    prices: dict[str, Any] = dict(DEFAULT_PRICES)
    if path:
        try:
            loaded = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                prices.update(loaded)
            else:
                log.warning("llmsight: LLMSIGHT_PRICES file %s is not a JSON object; using the defaults", path)
        except (OSError, ValueError) as exc:
            log.warning("llmsight: cannot read LLMSIGHT_PRICES file %s (%s); using the defaults", path, exc)
    if overrides:
        prices.update(overrides)
    return PriceTable(prices)

"""Every room's settings in one registry: the SDK's and each service's, in the README table's order.

The settings live with the room that reads them (``llmsight.config`` for the SDK, ``llmsight.<room>.settings``
for the services); importing a room's module registers its settings in :data:`llmsight.config.SETTINGS`.
The CLI is the one room that may import them all.
"""

from __future__ import annotations

import importlib

from llmsight.config import SETTINGS, Setting

# The order of the README's table: the flow of an event, from the app to the dashboard.
ROOMS = ("llmsight.config", "llmsight.store.settings", "llmsight.collector.settings",
         "llmsight.scheduler.settings", "llmsight.analyzers.settings", "llmsight.alerts.settings",
         "llmsight.evaluators.settings", "llmsight.review.settings", "llmsight.dashboard.settings", "llmsight.otlp.settings")


def all_settings() -> dict[str, Setting]:
    """Every ``LLMSIGHT_*`` setting of every room, by name."""
    for module in ROOMS:
        importlib.import_module(module)
    order = {room.removeprefix("llmsight.").removesuffix(".settings"): i for i, room in enumerate(ROOMS)}
    order["sdk"] = 0
    return dict(sorted(SETTINGS.items(), key=lambda item: order.get(item[1].service, len(ROOMS))))

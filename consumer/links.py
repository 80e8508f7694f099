"""Grafana links for a run: each configured dashboard, on the run's cluster and time window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode

from consumer.settings import Dashboard

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def grafana_links(
    grafana_url: str | None,
    dashboards: Iterable[Dashboard],
    cluster: str,
    start: datetime,
    end: datetime,
) -> dict[str, str]:
    """``{dashboard.key: url}``, each ``{grafana}/d/{uid}/{slug}?orgId=1&from=..&to=..&var-cluster_name=..``.

    ``from`` is rounded down and ``to`` up to the millisecond, so the panel covers the whole run.
    No ``grafana_url`` gives no links.
    """
    if not grafana_url:
        return {}
    base = grafana_url.rstrip("/")
    query = urlencode({"orgId": 1, "from": _ms_floor(start), "to": _ms_ceil(end), "var-cluster_name": cluster})
    return {
        dashboard.key: f"{base}/d/{quote(dashboard.uid, safe='')}/{quote(dashboard.slug, safe='')}?{query}"
        for dashboard in dashboards
    }


def _ms_floor(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return (moment - _EPOCH) // _MS  # integer arithmetic: no float rounding


def _ms_ceil(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return -((_EPOCH - moment) // _MS)

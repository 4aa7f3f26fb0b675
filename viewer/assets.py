"""Plotly's JavaScript, served by the viewer itself from the installed plotly package:
the pages work on machines without internet access (no CDN)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import plotly
from flask import Blueprint, Response, request
from plotly.offline import get_plotlyjs

bp = Blueprint("assets", __name__)


@lru_cache(maxsize=1)
def _plotly_js() -> tuple[bytes, str]:
    body = get_plotlyjs().encode("utf-8")
    return body, hashlib.sha256(body).hexdigest()[:16]


def plotly_js_url() -> str:
    # The version in the path lets browsers cache it for good.
    return f"/assets/plotly-{plotly.__version__}.min.js"


@bp.get("/assets/plotly-<version>.min.js")
def plotly_js(version: str) -> Response:
    body, etag = _plotly_js()
    if request.if_none_match.contains(etag):
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    response = Response(body, mimetype="text/javascript")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 86400 * 365 if version == plotly.__version__ else 300
    return response

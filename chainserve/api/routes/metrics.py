"""Prometheus scrape endpoint (behind the API keys when they are set)."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from chainserve.api.observability.metrics import Metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def scrape_metrics(request: Request) -> Response:
    """Serve every metric in Prometheus' text format."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

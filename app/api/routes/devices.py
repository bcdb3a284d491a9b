from __future__ import annotations

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from app.api.deps import UPSTREAM_ERRORS, ServiceDep, problem_responses, within_deadline
from app.api.http_cache import render
from app.api.thin_route import ThinRoute
from app.domain.models import DeviceStatus

router = APIRouter(tags=["devices"], route_class=ThinRoute)


@router.get(
    "/devices/{device_id}/status",
    operation_id="getDeviceStatus",
    response_model=DeviceStatus,
    summary="Health of one device",
    description="IOmeter: bridge and core status. Waltero: the newest telemetry of the last 7 days.",
    responses=problem_responses(404, 501, *UPSTREAM_ERRORS),
)
async def device_status(
    request: Request,
    service: ServiceDep,
    device_id: str = Path(
        description="`<backend>:<id>`, the `device_id` of a meter.",
        examples=["iometer:92276658-1e27-41c0-8a6a-63ec24ede6a4"],
    ),
) -> Response:
    answer = await within_deadline(request, service.device_status(device_id))
    return render(request, answer, answer.value)

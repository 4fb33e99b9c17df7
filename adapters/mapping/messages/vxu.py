"""VXU^V04: immunization record -> one Immunization per RXA (with its ORC, RXR and OBX)."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping.context import Context
from adapters.mapping.messages.adt import map_patient_details
from adapters.mapping.messages.common import map_subject
from adapters.mapping.registry import handles
from adapters.mapping.segments.immunization import map_immunization
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.order import map_service_request


@handles(
    "VXU",
    "V04",
    segments="MSH PID PD1 PV1 PV2 NK1 AL1 DG1 PR1 RF1 DB1 OBX IN1 IN2 GT1 PDA ACC ORC:ServiceRequest"
    " RXA:Immunization RXR:Immunization",
)
def vxu(ctx: Context) -> None:
    map_subject(ctx)
    head: list[hl7v2.Segment] = []
    groups: list[dict] = []
    orc = None
    for seg in ctx.message.segments[1:]:
        name = seg.name
        if name == "ORC":
            orc = seg
        elif name == "RXA":
            groups.append({"orc": orc, "rxa": seg, "rxr": None, "obx": []})
            orc = None
        elif name == "RXR" and groups and groups[-1]["rxr"] is None:
            groups[-1]["rxr"] = seg
        elif name == "OBX" and groups:
            groups[-1]["obx"].append(seg)
        elif not groups and orc is None:
            head.append(seg)
    map_patient_details(ctx, head)
    if not groups:
        raise ctx.fail(
            None, None, "", "Immunization", "the VXU message has no RXA segment", segment_name="RXA"
        )
    for group in groups:
        if group["orc"] is not None:  # the order behind the dose (IG: ORC -> ServiceRequest)
            map_service_request(ctx, group["orc"], None, default_status="unknown")
        url = map_immunization(
            ctx, group["rxa"], orc=group["orc"], rxr=group["rxr"], observations=group["obx"]
        )
        # Every OBX is an Observation (IG: VXU OBX -> Observation), also those the
        # Immunization reads its funding and VIS details from.
        for obx in group["obx"]:
            map_observation(ctx, obx, part_of=url)

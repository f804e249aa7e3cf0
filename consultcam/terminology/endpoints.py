"""HTTP endpoint for the coded data (CONTRACT issue 5, "HTTP API")."""

from __future__ import annotations

from fastapi import APIRouter

from consultcam.deps import ReadPrincipalDep
from consultcam.terminology import SNOMED_CT, TERMINOLOGY
from consultcam.terminology.schemas import BodySiteOut, BodySitesOut, LateralityOut, SourceOut, ViewOut

router = APIRouter(prefix="/api/terminology", tags=["terminology"])


def _body_sites_out() -> BodySitesOut:
    source = TERMINOLOGY.source
    return BodySitesOut(
        source=SourceOut(
            system=source["system"],
            name=source["name"],
            version=source["version"],
            release_date=source.get("releaseDate"),
            checked=source["checked"],
        ),
        body_sites=[
            BodySiteOut(system=SNOMED_CT, code=site.code, display=site.display, label=site.label)
            for site in TERMINOLOGY.body_sites
        ],
        laterality=[
            LateralityOut(
                value=side.value,
                display=side.display,
                system=SNOMED_CT if side.code else None,
                code=side.code,
            )
            for side in TERMINOLOGY.laterality
        ],
        views=[ViewOut(value=view.value, display=view.display) for view in TERMINOLOGY.views],
    )


#: Built once: the data is fixed for the life of the process (checked at import).
_RESPONSE = _body_sites_out()


@router.get(
    "/body-sites", response_model=BodySitesOut, response_model_exclude_none=True, operation_id="getBodySites"
)
async def body_sites(principal: ReadPrincipalDep) -> BodySitesOut:
    """The curated SNOMED CT body sites (most used first), laterality and views, for a clinician or any
    paired phone; 401 for anyone else."""
    del principal  # authorisation only: the list is the same for everyone signed in
    return _RESPONSE

"""HTTP endpoint for the coded data (CONTRACT issue 5, "HTTP API")."""

from __future__ import annotations

from fastapi import APIRouter

from consultcam.deps import ReadPrincipalDep
from consultcam.terminology import SNOMED_CT, Terminology, active
from consultcam.terminology.schemas import BodySiteOut, BodySitesOut, LateralityOut, SourceOut, ViewOut

router = APIRouter(prefix="/api/terminology", tags=["terminology"])


def _source_out(source: dict[str, str]) -> SourceOut:
    return SourceOut(
        system=source["system"],
        name=source["name"],
        version=source["version"],
        release_date=source.get("releaseDate"),
        checked=source["checked"],
    )


def _body_sites_out(terms: Terminology) -> BodySitesOut:
    return BodySitesOut(
        source=_source_out(terms.source),
        extension=_source_out(terms.extension_source) if terms.extension_source else None,
        body_sites=[
            BodySiteOut(system=SNOMED_CT, code=site.code, display=site.display, label=site.label)
            for site in terms.body_sites
        ],
        laterality=[
            LateralityOut(
                value=side.value,
                display=side.display,
                system=SNOMED_CT if side.code else None,
                code=side.code,
            )
            for side in terms.laterality
        ],
        views=[ViewOut(value=view.value, display=view.display) for view in terms.views],
    )


#: Built once per terminology: the data is fixed for the life of the process (checked at start-up).
_built: tuple[Terminology, BodySitesOut] | None = None


def _response() -> BodySitesOut:
    global _built
    terms = active()
    if _built is None or _built[0] is not terms:
        _built = (terms, _body_sites_out(terms))
    return _built[1]


@router.get(
    "/body-sites", response_model=BodySitesOut, response_model_exclude_none=True, operation_id="getBodySites"
)
async def body_sites(principal: ReadPrincipalDep) -> BodySitesOut:
    """The curated SNOMED CT body sites (most used first, then the practice's extension), laterality and
    views: the only codes and values image metadata accepts. For a clinician or any paired phone; 401 for
    anyone else."""
    del principal  # authorisation only: the list is the same for everyone signed in
    return _response()

"""Recipe discovery route (CONTRACT.md §3.16)."""

from __future__ import annotations

from astropy.time import Time
from fastapi import APIRouter

from app.discovery.models import SuggestRecipesRequest, SuggestRecipesResponse
from app.discovery.recipe_engine import suggest_recipes
from app.errors import BadRequest
from app.http_errors import error_responses

router = APIRouter(prefix="/discovery", tags=["Discovery"])


@router.post("/suggest-recipes", response_model=SuggestRecipesResponse,
             summary="Suggest colour-composite recipes", responses=error_responses(400, 422))
async def suggest(body: SuggestRecipesRequest):
    """Group the observations by instrument, order their filters by wavelength and
    suggest composites with chromatic colours (short wavelengths blue, long red).
    Spectra and proprietary observations are left out. A target name without
    observations answers its target and no recipes."""
    target = {"name": body.target_name} if body.target_name else None
    if not body.observations:
        if target is None:
            raise BadRequest("observations list is required (or a target_name)")
        return {"target": target, "recipes": []}
    recipes = suggest_recipes([o.model_dump() for o in body.observations], Time.now().mjd)
    return {"target": target, "recipes": recipes}
